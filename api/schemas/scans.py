"""Scan runs: what to scan, the answer that a run was accepted, a run and its live progress."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from api.schemas import ReadModel, RequestModel
from cybermission.scans.models import ScanStatus

# Bounds on what one request may ask for: a scan of a few hundred targets. Larger work is split
# by the caller (or scheduled), not smuggled in one call.
MAX_TARGETS = 256
MAX_PORTS = 1024

Target = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Port = Annotated[int, Field(ge=1, le=65535)]


class ScanRunCreate(RequestModel):
    """What to scan: IP addresses, CIDRs or names; ports default to the configured OT list."""

    targets: list[Target] = Field(min_length=1, max_length=MAX_TARGETS)
    ports: list[Port] | None = Field(default=None, min_length=1, max_length=MAX_PORTS)


class ScanRunAcceptedRead(ReadModel):
    """Answer to POST /scans: the run exists and will start in the background."""

    id: str
    status: ScanStatus
    url: str


class ScanProgressRead(ReadModel):
    """Live counters of a run this process is executing (the row's counts lag by one batch)."""

    hosts_total: int
    hosts_swept: int
    hosts_live: int
    hosts_identified: int
    open_ports: int
    observations: int
    findings: int


class ScanRunRead(ReadModel):
    id: str
    status: ScanStatus
    targets: list[str]
    ports: list[int]
    requested_by: str
    organization_id: str | None
    site_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    hosts_total: int
    hosts_probed: int
    open_ports: int
    observations: int
    findings: int
    errors: list[dict[str, Any]]
    sent: dict[str, Any]
    # Why it ended as it did (interrupted, cancelled, failed); None for a run that ran to its end.
    reason: str | None = None
    # The process executing it and its latest heartbeat (None for a site sensor's run).
    owner_host: str | None = None
    owner_pid: int | None = None
    heartbeat_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    cancel_requested_by: str | None = None
    # How often it was resumed after an interruption (POST /scans/{id}/resume, or its schedule).
    resumes: int = 0
    progress: ScanProgressRead | None = None
