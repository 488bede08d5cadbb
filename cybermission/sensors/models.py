"""Tables of the distributed mode: enrolled sensors, chunks of scan runs, ingested parts, and the
listening sessions of sensors on mirror ports with their ingested batches."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class SensorState(StrEnum):
    PENDING = "pending"  # enrolled, no broker permission yet: receives nothing
    APPROVED = "approved"
    REVOKED = "revoked"  # broker user deleted, connections closed


class Sensor(SQLModel, table=True):
    """A site's scanning agent; its broker user is its identity (the password is never stored)."""

    __tablename__ = "sensor"

    id: str = Field(default_factory=new_id, primary_key=True)
    site_id: str = Field(foreign_key="site.id", index=True)
    username: str = Field(max_length=100, unique=True)
    state: SensorState = Field(default=SensorState.PENDING, sa_type=enum_type(SensorState))
    # The networks it was enrolled for; it refuses chunks outside them (defence in depth).
    networks: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ChunkState(StrEnum):
    PENDING = "pending"  # written, waiting for the relay or the sensor
    RUNNING = "running"  # results partly ingested
    DONE = "done"
    FAILED = "failed"  # refused by the sensor, or out of attempts
    SKIPPED = "skipped"  # its window closed before a sensor took it: nothing was probed
    # Its run was cancelled (or closed) first: a sensor that has it, queued or mid-way, is told
    # to stop, and results it sends for it anyway are refused.
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (
            ChunkState.DONE,
            ChunkState.FAILED,
            ChunkState.SKIPPED,
            ChunkState.CANCELLED,
        )


class Chunk(SQLModel, table=True):
    """A slice of a scan run's targets, the sensor's unit of work; the row is also its outbox
    entry (``dispatched_at`` is null until the broker confirmed the publication)."""

    __tablename__ = "chunk"
    __table_args__ = (UniqueConstraint("scan_run_id", "seq"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    scan_run_id: str = Field(foreign_key="scan_run.id", index=True)
    site_id: str = Field(foreign_key="site.id", index=True)
    seq: int
    targets: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    hosts: int = 0
    not_after: datetime = Field(sa_type=UTCDateTime)
    state: ChunkState = Field(default=ChunkState.PENDING, index=True, sa_type=enum_type(ChunkState))
    attempts: int = 0
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    parts_total: int | None = None
    parts_done: int = 0
    # Totals reported by the sensor, summed into the run when it ends.
    hosts_swept: int = 0
    hosts_live: int = 0
    open_ports: int = 0
    observations: int = 0
    findings: int = 0
    errors: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # What its sensor sent, in the run's form (SentRequests.to_json, cybermission/probes.py).
    sent: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The outbox of a cancelled chunk: null until the broker confirmed the cancel notice to its
    # site's sensors (``relay.relay_cancels``).
    cancel_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ChunkPart(SQLModel, table=True):
    """The idempotency key of ingestion: a part of a chunk's results is applied once."""

    __tablename__ = "chunk_part"
    __table_args__ = (UniqueConstraint("chunk_id", "part"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    scan_run_id: str = Field(foreign_key="scan_run.id", index=True)
    chunk_id: str = Field(foreign_key="chunk.id", index=True)
    part: int
    hosts: int = 0
    ingested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ListenSession(SQLModel, table=True):
    """A site sensor's listening session (named by the sensor): the site's passive run its
    traffic batches are recorded in."""

    __tablename__ = "listen_session"

    id: str = Field(primary_key=True, max_length=64)
    site_id: str = Field(foreign_key="site.id", index=True)
    scan_run_id: str = Field(foreign_key="scan_run.id", index=True)
    interface: str = Field(max_length=64)
    batches: int = 0
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_batch_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ListenBatch(SQLModel, table=True):
    """The idempotency key of traffic ingestion: a batch of a session is applied once."""

    __tablename__ = "listen_batch"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    session_id: str = Field(foreign_key="listen_session.id", index=True, max_length=64)
    seq: int
    rows: int = 0
    ingested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RejectionReason(StrEnum):
    FOREIGN = "foreign"  # names a chunk, run or address of another site
    DUPLICATE = "duplicate"  # already ingested (a redelivery): harmless, counted
    MALFORMED = "malformed"  # not a results part: its field and what was expected in ``detail``
    # A results part of a message version this centre does not read (a sensor of another
    # release): refused whole, kept in the sensor's journal until one side is upgraded.
    VERSION = "version"
    # A part of a chunk whose run was cancelled before it arrived: nothing of it is applied.
    CANCELLED = "cancelled"


class RejectedPart(SQLModel, table=True):
    """A results part refused at ingestion, kept for the count and the audit."""

    __tablename__ = "rejected_part"

    id: str = Field(default_factory=new_id, primary_key=True)
    # The site the broker delivered it from (never the message's own claim).
    site_id: str | None = Field(default=None, foreign_key="site.id", index=True)
    reason: RejectionReason = Field(sa_type=enum_type(RejectionReason))
    chunk_id: str | None = Field(default=None, max_length=64)
    detail: str = Field(default="", max_length=500)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
