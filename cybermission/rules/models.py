"""Tables of the shared rule packs: what the coordinator published (each version kept whole) and
what each organisation decided about it (every decision kept, the latest one holds). The columns
every kind of pack has are ``cybermission/packs.py``'s."""

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field

# Re-exported: the API and the tests import the word with the tables.
from cybermission.packs import PackBase, PackDecisionBase
from cybermission.packs import PackDecision as PackDecision


class RulePack(PackBase, table=True):
    """One version of a rule pack: its rules as the YAML text they were published in, never
    edited afterwards (a change is a new version)."""

    __tablename__ = "rule_pack"
    __table_args__ = (UniqueConstraint("name", "version"),)

    # Rule YAML texts, each a whole rule file (its id is its name in the pack).
    rules: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class RulePackDecision(PackDecisionBase, table=True):
    """An organisation's admin adopting (optionally pinned to a version) or declining a pack:
    its scans evaluate the pack's rules, or do not."""

    __tablename__ = "rule_pack_decision"
