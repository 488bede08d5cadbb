"""The shared packs' uptake as the coordinator reads it: per published version, how many
organisations it applies to, withheld when a few (privacy rule 8, README). Rule packs and family
packs alike (``cybermission/packs.py``)."""

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlmodel import Session

from cybermission.packs import PackBase, PackDecisionBase, Packs
from cybermission.territory.privacy import Shown, disclose_count

P = TypeVar("P", bound=PackBase)
D = TypeVar("D", bound=PackDecisionBase)


@dataclass(frozen=True, slots=True)
class PackUptake(Generic[P]):
    pack: P
    organizations_evaluating: Shown


def pack_uptake(session: Session, packs: Packs[P, D], *, threshold: int) -> list[PackUptake[P]]:
    """Every published version with its count of organisations it applies to, disclosed by the
    same threshold as every territory aggregate (the API and the console read this)."""
    counts = packs.adoption_counts(session)
    return [
        PackUptake(p, disclose_count(counts.get((p.name, p.version), 0), threshold=threshold))
        for p in packs.list_packs(session)
    ]
