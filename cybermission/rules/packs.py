"""Shared rule packs: the coordinator publishes versioned packs, each organisation's admins adopt
(optionally pinned to a version) or decline them, and an organisation's scans evaluate the rules
of the packs it adopted beside the installed ones.

Versions, decisions and counts are every kind of pack's (``cybermission/packs.py``); this holds
what is a rule pack's own: its rules, checked when published, and how scans evaluate them. What a
pack finds stays with the organisation whose scan found it.
"""

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from sqlmodel import Session

from cybermission.errors import RuleError, ValidationError
from cybermission.packs import Packs
from cybermission.rules.loader import Rule, load_rule_text
from cybermission.rules.models import RulePack, RulePackDecision

logger = logging.getLogger(__name__)

MAX_PACK_RULES: Final = 200
RULE_PACKS: Final = Packs(noun="rule pack", pack=RulePack, decision=RulePackDecision)


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
    version = RULE_PACKS.next_version(session, name)
    if not rules:
        raise ValidationError("rules: a pack holds at least one rule (YAML text)")
    if len(rules) > MAX_PACK_RULES:
        raise ValidationError(f"rules: at most {MAX_PACK_RULES} per pack")
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
    return RULE_PACKS.store(session, pack)


# Listing, deciding and counting are every pack's (cybermission/packs.py).
list_packs = RULE_PACKS.list_packs
get_pack_version_or_raise = RULE_PACKS.get_version_or_raise
decide = RULE_PACKS.decide
list_decisions = RULE_PACKS.list_decisions
adopted_packs = RULE_PACKS.adopted
adoption_counts = RULE_PACKS.adoption_counts


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
