"""Tables of the shared rule packs: what the coordinator published (each version kept whole) and
what each organisation decided about it (every decision kept, the latest one holds)."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class RulePack(SQLModel, table=True):
    """One version of a pack the coordinator published: its rules as the YAML text they were
    published in, never edited afterwards (a change is a new version)."""

    __tablename__ = "rule_pack"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=100, index=True)
    version: int
    title: str = Field(max_length=300)
    notes: str = Field(default="", max_length=4000)
    # Rule YAML texts, each a whole rule file (its id is its name in the pack).
    rules: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    published_by: str = Field(max_length=100)
    published_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PackDecision(StrEnum):
    """What an organisation decided about a pack."""

    ADOPT = "adopt"  # its scans evaluate the pack's rules (the pinned version, or the latest)
    DECLINE = "decline"  # its scans do not


class RulePackDecision(SQLModel, table=True):
    """An organisation's admin adopting (optionally pinned to a version) or declining a pack."""

    __tablename__ = "rule_pack_decision"

    id: str = Field(default_factory=new_id, primary_key=True)
    # Which decision came last, whatever the clock's resolution (two in one second).
    sequence: int = Field(index=True)
    organization_id: str = Field(foreign_key="organization.id", index=True)
    pack_name: str = Field(max_length=100)
    decision: PackDecision = Field(sa_type=enum_type(PackDecision))
    pinned_version: int | None = None
    decided_by: str = Field(max_length=100)
    decided_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
