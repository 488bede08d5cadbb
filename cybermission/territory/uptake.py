"""The shared rule packs' uptake as the coordinator reads it: per published version, how many
organisations' scans evaluate it, withheld when a few (privacy rule 8, README)."""

from dataclasses import dataclass

from sqlmodel import Session

from cybermission.rules.models import RulePack
from cybermission.rules.packs import adoption_counts, list_packs
from cybermission.territory.privacy import Shown, disclose_count


@dataclass(frozen=True, slots=True)
class PackUptake:
    pack: RulePack
    organizations_evaluating: Shown


def pack_uptake(session: Session, *, threshold: int) -> list[PackUptake]:
    """Every published version with its count of organisations evaluating it, disclosed by the
    same threshold as every territory aggregate (the API and the console read this)."""
    counts = adoption_counts(session)
    return [
        PackUptake(p, disclose_count(counts.get((p.name, p.version), 0), threshold=threshold))
        for p in list_packs(session)
    ]
