"""Shared rule packs: the coordinator publishes versioned packs, each organisation's admins adopt
(optionally pinned to a version) or decline them, and an organisation's scans evaluate the rules
of the packs it adopted beside the installed ones.

A published version is never edited: publishing again makes the next version. Every decision is
a row; the latest one per (organisation, pack) holds. Nothing here reads an organisation's
devices or findings: what a pack finds stays with the organisation whose scan found it.
"""

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from sqlalchemy import func
from sqlmodel import Session, col, select

from cybermission.errors import ConflictError, NotFoundError, RuleError, ValidationError
from cybermission.rules.loader import Rule, load_rule_text
from cybermission.rules.models import PackDecision, RulePack, RulePackDecision

logger = logging.getLogger(__name__)

MAX_PACK_RULES: Final = 200
_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


def pack_rule_path(name: str, version: int, rule_id: str) -> Path:
    """How a stored rule names itself in errors and findings' provenance."""
    return Path(f"{name}@{version}") / f"{rule_id}.yaml"


def compile_pack(pack: RulePack) -> list[Rule]:
    """The rules of a stored version (their examples were checked when it was published)."""
    rules = []
    for text in pack.rules:
        rule_id = _rule_id(text)
        path = pack_rule_path(pack.name, pack.version, rule_id)
        rules.append(load_rule_text(text, path=path, check_examples=False))
    return rules


def _rule_id(text: str) -> str:
    # The id names the stored file; load_rule_text checks it against the rule's own id.
    match = re.search(r"(?m)^id:\s*['\"]?([A-Za-z0-9._-]+)", text)
    return match.group(1) if match else "rule"


def publish_pack(
    session: Session,
    *,
    name: str,
    title: str,
    notes: str,
    rules: Sequence[str],
    installed_ids: frozenset[str],
    published_by: str,
) -> RulePack:
    """Store the next version of pack ``name``; every rule must load with its examples passing,
    and no id may be an installed rule's or appear twice."""
    if not _NAME_RE.match(name):
        raise ValidationError(
            "name: lower-case letters, digits and '-', starting with a letter or digit, at most 100"
        )
    if not rules:
        raise ValidationError("rules: a pack holds at least one rule (YAML text)")
    if len(rules) > MAX_PACK_RULES:
        raise ValidationError(f"rules: at most {MAX_PACK_RULES} per pack")
    version = _latest_version(session, name) + 1
    seen: set[str] = set()
    for index, text in enumerate(rules):
        path = pack_rule_path(name, version, _rule_id(text))
        try:
            rule = load_rule_text(text, path=path)
        except RuleError as exc:
            raise ValidationError(f"rules[{index}]: {exc}") from exc
        if rule.id in installed_ids:
            raise ValidationError(f"rules[{index}]: {rule.id!r} is an installed rule's id")
        if rule.id in seen:
            raise ValidationError(f"rules[{index}]: {rule.id!r} appears twice in the pack")
        seen.add(rule.id)
    pack = RulePack(
        name=name,
        version=version,
        title=title,
        notes=notes,
        rules=list(rules),
        published_by=published_by[:100],
    )
    session.add(pack)
    session.flush()
    logger.info("rule pack published", extra={"pack": name, "version": version})
    return pack


def _latest_version(session: Session, name: str) -> int:
    found = session.exec(select(func.max(RulePack.version)).where(col(RulePack.name) == name)).one()
    return int(found or 0)


def list_packs(session: Session) -> list[RulePack]:
    """Every published version, by name then version."""
    return list(
        session.exec(select(RulePack).order_by(col(RulePack.name), col(RulePack.version))).all()
    )


def get_pack_version_or_raise(session: Session, *, name: str, version: int) -> RulePack:
    pack = session.exec(
        select(RulePack).where(col(RulePack.name) == name, col(RulePack.version) == version)
    ).first()
    if pack is None:
        raise NotFoundError(f"no rule pack {name!r} version {version}")
    return pack


def decide(
    session: Session,
    *,
    organization_id: str,
    pack_name: str,
    decision: PackDecision,
    pinned_version: int | None,
    decided_by: str,
) -> RulePackDecision:
    """Record an organisation's decision on a pack; pinning names a published version."""
    latest = _latest_version(session, pack_name)
    if latest == 0:
        raise NotFoundError(f"no rule pack {pack_name!r}")
    if decision is PackDecision.DECLINE and pinned_version is not None:
        raise ValidationError("pinned_version: a declined pack pins no version")
    if pinned_version is not None:
        get_pack_version_or_raise(session, name=pack_name, version=pinned_version)
    current = current_decisions(session, organization_id=organization_id).get(pack_name)
    if (
        current is not None
        and current.decision is decision
        and current.pinned_version == pinned_version
    ):
        raise ConflictError(f"this organisation already decided exactly that on {pack_name!r}")
    sequence = session.exec(
        select(func.max(RulePackDecision.sequence)).where(
            col(RulePackDecision.organization_id) == organization_id
        )
    ).one()
    row = RulePackDecision(
        sequence=int(sequence or 0) + 1,
        organization_id=organization_id,
        pack_name=pack_name,
        decision=decision,
        pinned_version=pinned_version,
        decided_by=decided_by[:100],
    )
    session.add(row)
    session.flush()
    logger.info(
        "rule pack decided",
        extra={
            "organization_id": organization_id,
            "pack": pack_name,
            "decision": str(decision),
            "pinned_version": pinned_version,
        },
    )
    return row


def list_decisions(session: Session, *, organization_id: str) -> list[RulePackDecision]:
    """Every decision the organisation took, oldest first (the record)."""
    return list(
        session.exec(
            select(RulePackDecision)
            .where(col(RulePackDecision.organization_id) == organization_id)
            .order_by(col(RulePackDecision.sequence))
        ).all()
    )


def current_decisions(session: Session, *, organization_id: str) -> dict[str, RulePackDecision]:
    """The decision that holds, per pack name."""
    held: dict[str, RulePackDecision] = {}
    for row in list_decisions(session, organization_id=organization_id):
        held[row.pack_name] = row
    return held


def adopted_packs(session: Session, *, organization_id: str | None) -> list[RulePack]:
    """The pack versions the organisation's scans evaluate: the pinned version, or the latest."""
    if organization_id is None:
        return []
    packs: list[RulePack] = []
    for name, row in sorted(current_decisions(session, organization_id=organization_id).items()):
        if row.decision is not PackDecision.ADOPT:
            continue
        version = row.pinned_version or _latest_version(session, name)
        packs.append(get_pack_version_or_raise(session, name=name, version=version))
    return packs


def adoption_counts(session: Session) -> dict[tuple[str, int], int]:
    """How many organisations evaluate each (pack, version) now (the coordinator's count)."""
    organizations = session.exec(select(RulePackDecision.organization_id).distinct()).all()
    counts: dict[tuple[str, int], int] = {}
    for organization_id in organizations:
        for pack in adopted_packs(session, organization_id=organization_id):
            key = (pack.name, pack.version)
            counts[key] = counts.get(key, 0) + 1
    return counts


def rules_with_packs(installed: Sequence[Rule], packs: Sequence[RulePack]) -> list[Rule]:
    """The installed rules and the adopted packs' ones; a pack rule whose id another rule already
    holds (an installed rule added after the pack was published) is left out, with a warning."""
    rules = list(installed)
    held = {rule.id for rule in rules}
    for pack in packs:
        for rule in compile_pack(pack):
            if rule.id in held:
                logger.warning(
                    "rule pack rule skipped: id taken",
                    extra={"pack": pack.name, "version": pack.version, "rule": rule.id},
                )
                continue
            held.add(rule.id)
            rules.append(rule)
    return rules
