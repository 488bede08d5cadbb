"""Tables of what we looked at: scopes, scan runs and the raw observations they produced."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class ScopeBase(SQLModel):
    # Unique per organisation (its site's): a clash never names another partner's scopes.
    name: str = Field(index=True, max_length=100)
    cidrs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    excludes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    valid_from: datetime | None = Field(default=None, sa_type=UTCDateTime)
    valid_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reference: str = Field(default="", max_length=500)
    # Where the networks are: findings and the score use the zone's exposure.
    site_id: str | None = Field(default=None, foreign_key="site.id", index=True)
    zone_id: str | None = Field(default=None, foreign_key="zone.id", index=True)


class Scope(ScopeBase, table=True):
    __tablename__ = "scope"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    # The organisation of its site, kept here so names are unique per organisation and a run's
    # guard is built from its organisation's scopes only; None: a global scope (no site).
    organization_id: str | None = Field(default=None, foreign_key="organization.id", index=True)
    # Why this row cannot authorise under today's input rules (a NAT64 /96 stored before the
    # boundary refused it, an inverted validity), or None. Such a row is left out of every guard
    # (scans of the other scopes go on) until an admin fixes or deletes it.
    invalid_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ScanStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # finished, but some hosts or probes could not be completed
    FAILED = "failed"
    # Stopped before the end: its owner stopped (signal, shutdown) or died; resumable.
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"  # stopped on a person's request

    @property
    def finished(self) -> bool:
        return self not in (ScanStatus.QUEUED, ScanStatus.RUNNING)


class ScanRun(SQLModel, table=True):
    __tablename__ = "scan_run"

    id: str = Field(default_factory=new_id, primary_key=True)
    status: ScanStatus = Field(default=ScanStatus.QUEUED, index=True, sa_type=enum_type(ScanStatus))
    targets: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    ports: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    udp_ports: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    requested_by: str = Field(default="cli", max_length=100)
    organization_id: str | None = Field(default=None, foreign_key="organization.id", index=True)
    site_id: str | None = Field(default=None, foreign_key="site.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    hosts_total: int = 0
    hosts_probed: int = 0
    open_ports: int = 0
    observations: int = 0
    findings: int = 0
    # Errors the run met: [{"target": ..., "stage": ..., "error": ...}], bounded in length.
    errors: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # What was sent, per probe and request: {"modbus": {"fc43/mei14/basic": 3}}.
    sent: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Why it ended as it did, when that is not "it ran to the end" (interrupted, cancelled, failed).
    reason: str | None = Field(default=None, max_length=500)
    # The process that executes the run (``cybermission.scans.ownership``): its instance id
    # (unique per process start), host and pid, and the lease it renews while it runs. None for
    # runs no process of ours executes (a site sensor's chunks have deadlines of their own).
    owner_instance: str | None = Field(default=None, max_length=36)
    owner_host: str | None = Field(default=None, max_length=255)
    owner_pid: int | None = None
    heartbeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A cancel asked by any process; the owner sees it at its next heartbeat and stops.
    cancel_requested_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_requested_by: str | None = Field(default=None, max_length=100)
    # How often the run was resumed after an interruption (``cybermission.scans.resume``).
    resumes: int = 0


class ObservationRecord(SQLModel, table=True):
    """A probe's raw evidence, kept as seen (the inventory is derived from it)."""

    __tablename__ = "observation"

    id: str = Field(default_factory=new_id, primary_key=True)
    scan_run_id: str = Field(foreign_key="scan_run.id", index=True)
    probe: str = Field(max_length=50)
    protocol: str = Field(max_length=50)
    address: str = Field(max_length=64, index=True)
    port: int
    transport: str = Field(max_length=8)
    observed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ScanRunHost(SQLModel, table=True):
    """A host a run finished: written in the transaction that stores its results, so a resumed
    run knows exactly what it need not probe again (``cybermission.scans.resume``)."""

    __tablename__ = "scan_run_host"

    id: str = Field(default_factory=new_id, primary_key=True)
    scan_run_id: str = Field(foreign_key="scan_run.id", index=True)
    address: str = Field(max_length=64)
    # The device its results went to; what the run's end needs (auto-resolve) from this host.
    device_id: str | None = Field(default=None, max_length=36)
    open_ports: int = 0
    errors: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # What was sent to it: {"modbus": {"fc43/mei14/basic": 3}}.
    sent: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
