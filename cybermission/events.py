"""The event log: what happened, appended in the same transaction as the change itself.

It is the outbox of alerting (a delivery worker reads it after commit, so a crash loses nothing)
and the source of the dashboards' event stream. Kinds are dotted nouns: ``scan.finished``,
``scan.failed``, ``scan.interrupted``, ``finding.created`` and one per status change of a finding
(``finding.reopened``, ``.acknowledged``, ``.risk-accepted``, ``.false-positive``, ``.resolved``:
``cybermission/findings/events.py``), ``asset.created``, ``asset.changed``, ``asset.unreachable``,
``asset.identity-conflict``, ``service.opened``, ``service.closed``, ``campaign.opened`` (one per
organisation a campaign affects, naming its devices only).
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict, Unpack

from sqlalchemy import JSON, BigInteger, Column, Integer, func
from sqlmodel import Field, Session, SQLModel, col, select

from cybermission.db import UTCDateTime, enum_type, insert_values, utcnow
from cybermission.visibility import visible


class EventKind(StrEnum):
    SCAN_FINISHED = "scan.finished"
    SCAN_FAILED = "scan.failed"
    # Interrupted (its process stopped or died) or cancelled: the payload's status says which.
    SCAN_INTERRUPTED = "scan.interrupted"
    FINDING_CREATED = "finding.created"
    FINDING_REOPENED = "finding.reopened"
    FINDING_ACKNOWLEDGED = "finding.acknowledged"
    FINDING_RISK_ACCEPTED = "finding.risk-accepted"
    FINDING_FALSE_POSITIVE = "finding.false-positive"
    FINDING_RESOLVED = "finding.resolved"
    ASSET_CREATED = "asset.created"
    ASSET_CHANGED = "asset.changed"
    ASSET_UNREACHABLE = "asset.unreachable"  # missed by consecutive complete scans
    ASSET_IDENTITY_CONFLICT = "asset.identity-conflict"  # serial and MAC name two devices
    SERVICE_OPENED = "service.opened"
    SERVICE_CLOSED = "service.closed"
    # An organisation's devices are affected by a territory campaign (cybermission/territory).
    CAMPAIGN_OPENED = "campaign.opened"
    # A stored scope the input boundary now refuses (stored before the rule): flagged, no guard
    # rule until an admin fixes or deletes it.
    SCOPE_INVALID = "scope.invalid"


# Events about one finding: they carry its severity, and alert policies filter them by it.
FINDING_EVENT_KINDS: frozenset[EventKind] = frozenset(
    kind for kind in EventKind if kind.startswith("finding.")
)


class Event(SQLModel, table=True):
    """One fact worth telling; ``id`` grows monotonically, so readers resume from the last seen."""

    __tablename__ = "event"

    # BIGINT on PostgreSQL; INTEGER PRIMARY KEY on SQLite, which is its rowid (autoincrement).
    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    kind: EventKind = Field(sa_type=enum_type(EventKind), index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    organization_id: str | None = Field(default=None, max_length=36, index=True)
    site_id: str | None = Field(default=None, max_length=36)
    scan_run_id: str | None = Field(default=None, max_length=36)
    subject_id: str | None = Field(default=None, max_length=36)  # finding, device or run id
    severity: str | None = Field(default=None, max_length=16)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class EventPlace(TypedDict, total=False):
    """What an event is about and where it happened (every key optional, absent is None)."""

    subject_id: str | None  # finding, device or run id
    scan_run_id: str | None
    organization_id: str | None
    site_id: str | None
    severity: str | None


# Every key of EventPlace as None: a batch's rows all carry every column (one multi-row INSERT).
_NOWHERE: dict[str, None] = dict.fromkeys(EventPlace.__annotations__)


def record_event(
    session: Session, kind: EventKind, *, payload: dict[str, Any], **place: Unpack[EventPlace]
) -> Event:
    """Append an event to the caller's transaction (it commits or vanishes with the change)."""
    event = Event(kind=kind, payload=payload, **place)
    session.add(event)
    return event


class EventBatch:
    """Events appended to the caller's transaction with one INSERT when written.

    A scan batch logs one event per new asset, change and finding: thousands per run, which as
    ORM objects cost more to build than the store spends writing them (issue 12). Ids still grow
    in the order the events were added.
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, kind: EventKind, *, payload: dict[str, Any], **place: Unpack[EventPlace]) -> None:
        self._rows.append({"kind": kind, "at": utcnow(), **_NOWHERE, **place, "payload": payload})

    def write(self, session: Session) -> None:
        """Insert what was added, in order, and start empty again."""
        insert_values(session, Event, self._rows)
        self._rows = []


def events_after(
    session: Session, *, after_id: int, limit: int = 500, visible_to: str | None = None
) -> list[Event]:
    """Events with ``id > after_id`` in order: how the outbox worker and streams catch up.

    ``visible_to``: only the events of that organisation (None, the worker's: every event).
    """
    query = select(Event).where(
        col(Event.id) > after_id, visible(col(Event.organization_id), visible_to)
    )
    return list(session.exec(query.order_by(col(Event.id)).limit(limit)).all())


def list_recent_events(*, session: Session, visible_to: str | None, limit: int) -> list[Event]:
    """The latest events ``visible_to`` sees, newest first."""
    query = select(Event).where(visible(col(Event.organization_id), visible_to))
    return list(session.exec(query.order_by(col(Event.id).desc()).limit(limit)).all())


def last_event_id(*, session: Session) -> int:
    """The id of the newest event of every organisation (0 when there is none): where a stream
    that wants only new events starts."""
    return int(session.exec(select(func.max(Event.id))).one() or 0)
