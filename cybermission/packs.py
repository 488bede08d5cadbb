"""Shared packs: what the coordinator publishes in versions and each organisation adopts (pinned
to a version, or following the latest) or declines. Rule packs (``cybermission/rules/packs.py``)
and advisory family packs (``cybermission/findings/advisories/family_packs.py``) are two kinds of
pack: each keeps its own content and its own two tables, and both publish, decide and count
through :class:`Packs` here.

A published version is never edited: publishing again makes the next version. Every decision is
a row; the latest one per (organisation, pack) holds. Nothing here reads an organisation's
devices or findings.
"""

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, Generic, TypeVar

from sqlalchemy import func
from sqlmodel import Field, Session, SQLModel, col, select

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow
from cybermission.errors import ConflictError, NotFoundError, ValidationError

logger = logging.getLogger(__name__)

_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


class PackDecision(StrEnum):
    """What an organisation decided about a pack."""

    ADOPT = "adopt"  # it applies (the pinned version, or the latest)
    DECLINE = "decline"  # it does not


class PackBase(SQLModel):
    """One version of a pack the coordinator published (a table adds the content)."""

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=100, index=True)
    version: int
    title: str = Field(max_length=300)
    notes: str = Field(default="", max_length=4000)
    published_by: str = Field(max_length=100)
    published_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PackDecisionBase(SQLModel):
    """An organisation's admin adopting (optionally pinned to a version) or declining a pack."""

    id: str = Field(default_factory=new_id, primary_key=True)
    # Which decision came last, whatever the clock's resolution (two in one second).
    sequence: int = Field(index=True)
    organization_id: str = Field(foreign_key="organization.id", index=True)
    pack_name: str = Field(max_length=100)
    decision: PackDecision = Field(sa_type=enum_type(PackDecision))
    pinned_version: int | None = None
    decided_by: str = Field(max_length=100)
    decided_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


P = TypeVar("P", bound=PackBase)
D = TypeVar("D", bound=PackDecisionBase)


@dataclass(frozen=True, slots=True)
class Packs(Generic[P, D]):
    """Publishing, deciding and counting for one kind of pack (its two tables)."""

    noun: str  # "rule pack", "family pack": how errors and logs name it
    pack: type[P]
    decision: type[D]

    def check_name(self, name: str) -> None:
        if not _NAME_RE.match(name):
            raise ValidationError(
                "name: lower-case letters, digits and '-', starting with a letter or digit,"
                " at most 100"
            )

    def latest_version(self, session: Session, name: str) -> int:
        found = session.exec(
            select(func.max(self.pack.version)).where(col(self.pack.name) == name)
        ).one()
        return int(found or 0)

    def next_version(self, session: Session, name: str) -> int:
        """The version publishing ``name`` now stores (its name checked first)."""
        self.check_name(name)
        return self.latest_version(session, name) + 1

    def store(self, session: Session, pack: P) -> P:
        """Store a version whose content the caller checked (built with :meth:`next_version`)."""
        session.add(pack)
        session.flush()
        logger.info(
            "pack published", extra={"kind": self.noun, "pack": pack.name, "version": pack.version}
        )
        return pack

    def list_packs(self, session: Session) -> list[P]:
        """Every published version, by name then version."""
        return list(
            session.exec(select(self.pack).order_by(col(self.pack.name), col(self.pack.version)))
        )

    def get_version_or_raise(self, session: Session, *, name: str, version: int) -> P:
        pack = session.exec(
            select(self.pack).where(col(self.pack.name) == name, col(self.pack.version) == version)
        ).first()
        if pack is None:
            raise NotFoundError(f"no {self.noun} {name!r} version {version}")
        return pack

    def decide(
        self,
        session: Session,
        *,
        organization_id: str,
        pack_name: str,
        decision: PackDecision,
        pinned_version: int | None,
        decided_by: str,
    ) -> D:
        """Record an organisation's decision on a pack; pinning names a published version."""
        if self.latest_version(session, pack_name) == 0:
            raise NotFoundError(f"no {self.noun} {pack_name!r}")
        if decision is PackDecision.DECLINE and pinned_version is not None:
            raise ValidationError(f"pinned_version: a declined {self.noun} pins no version")
        if pinned_version is not None:
            self.get_version_or_raise(session, name=pack_name, version=pinned_version)
        current = self.current_decisions(session, organization_id=organization_id).get(pack_name)
        if (
            current is not None
            and current.decision is decision
            and current.pinned_version == pinned_version
        ):
            raise ConflictError(f"this organisation already decided exactly that on {pack_name!r}")
        sequence = session.exec(
            select(func.max(self.decision.sequence)).where(
                col(self.decision.organization_id) == organization_id
            )
        ).one()
        row = self.decision(
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
            "pack decided",
            extra={
                "kind": self.noun,
                "organization_id": organization_id,
                "pack": pack_name,
                "decision": str(decision),
                "pinned_version": pinned_version,
            },
        )
        return row

    def list_decisions(self, session: Session, *, organization_id: str) -> list[D]:
        """Every decision the organisation took, oldest first (the record)."""
        return list(
            session.exec(
                select(self.decision)
                .where(col(self.decision.organization_id) == organization_id)
                .order_by(col(self.decision.sequence))
            )
        )

    def current_decisions(self, session: Session, *, organization_id: str) -> dict[str, D]:
        """The decision that holds, per pack name."""
        held: dict[str, D] = {}
        for row in self.list_decisions(session, organization_id=organization_id):
            held[row.pack_name] = row
        return held

    def adopted(self, session: Session, *, organization_id: str | None) -> list[P]:
        """The versions that apply to the organisation, by name: the pinned one, or the latest."""
        if organization_id is None:
            return []
        packs: list[P] = []
        for name, row in sorted(
            self.current_decisions(session, organization_id=organization_id).items()
        ):
            if row.decision is not PackDecision.ADOPT:
                continue
            version = row.pinned_version or self.latest_version(session, name)
            packs.append(self.get_version_or_raise(session, name=name, version=version))
        return packs

    def adoption_counts(self, session: Session) -> dict[tuple[str, int], int]:
        """How many organisations each (pack, version) applies to now (the coordinator's count)."""
        organizations = session.exec(select(self.decision.organization_id).distinct()).all()
        counts: dict[tuple[str, int], int] = {}
        for organization_id in organizations:
            for pack in self.adopted(session, organization_id=organization_id):
                key = (pack.name, pack.version)
                counts[key] = counts.get(key, 0) + 1
        return counts
