"""Request and response bodies of the HTTP API (the Create/Read ladder over the core tables)."""

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cybermission.findings.models import FindingStatus, Severity
from cybermission.inventory.models import ChangeKind
from cybermission.scans.models import ScanStatus

# Bounds on what one request may ask for: a scan of a few hundred targets, a scope of a few
# hundred networks. Larger work is split by the caller (or scheduled), not smuggled in one call.
MAX_TARGETS = 256
MAX_PORTS = 1024
MAX_SCOPE_NETWORKS = 512
MAX_PAGE = 500

T = TypeVar("T")

Target = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Port = Annotated[int, Field(ge=1, le=65535)]
Cidr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``?cursor=`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- scans --------------------------------------------------------------------------------------


class ScanCreate(BaseModel):
    """What to scan: IP addresses, CIDRs or names; ports default to the configured OT list."""

    model_config = ConfigDict(extra="forbid")

    targets: list[Target] = Field(min_length=1, max_length=MAX_TARGETS)
    ports: list[Port] | None = Field(default=None, min_length=1, max_length=MAX_PORTS)


class ScanProgressRead(_FromRow):
    """Live counters of a run this process is executing (the row's counts lag by one batch)."""

    hosts_total: int
    hosts_swept: int
    hosts_live: int
    hosts_identified: int
    open_ports: int
    observations: int
    findings: int


class ScanRunRead(_FromRow):
    id: str
    status: ScanStatus
    targets: list[str]
    ports: list[int]
    requested_by: str
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
    progress: ScanProgressRead | None = None


class ScanAccepted(BaseModel):
    """Answer to POST /scans: the run exists and will start in the background."""

    id: str
    status: ScanStatus
    url: str


# --- assets -------------------------------------------------------------------------------------


class DeviceRead(_FromRow):
    id: str
    name: str
    device_type_id: str | None
    parent_id: str | None
    vendor: str | None
    product: str | None
    model: str | None
    firmware: str | None
    serial: str | None
    role: str | None
    unit_id: int | None
    first_seen_at: datetime
    last_seen_at: datetime


class ServiceRead(_FromRow):
    id: str
    address: str
    port: int
    transport: str
    protocol: str
    facts: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime


class ChangeEventRead(_FromRow):
    id: str
    scan_run_id: str | None
    kind: ChangeKind
    field: str | None
    old_value: str | None
    new_value: str | None
    at: datetime


class DeviceDetail(DeviceRead):
    """One asset with where it answers, what it runs, and what changed lately."""

    provenance: dict[str, Any]
    addresses: list[str]
    services: list[ServiceRead]
    recent_changes: list[ChangeEventRead]


# --- findings -----------------------------------------------------------------------------------


class FindingRead(_FromRow):
    id: str
    rule_id: str
    device_id: str
    service_id: str | None
    port: int | None
    protocol: str | None
    title: str
    severity: Severity
    score: float
    score_breakdown: dict[str, Any]
    status: FindingStatus
    evidence: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime
    last_scan_run_id: str | None


# --- scopes -------------------------------------------------------------------------------------


class ScopeCreate(BaseModel):
    """An authorised network scope; the core refuses malformed or too-wide CIDRs."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    cidrs: list[Cidr] = Field(min_length=1, max_length=MAX_SCOPE_NETWORKS)
    excludes: list[Cidr] = Field(default_factory=list, max_length=MAX_SCOPE_NETWORKS)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    reference: str = Field(default="", max_length=500)


class ScopeRead(_FromRow):
    id: str
    name: str
    cidrs: list[str]
    excludes: list[str]
    valid_from: datetime | None
    valid_until: datetime | None
    reference: str
    created_at: datetime


# --- health -------------------------------------------------------------------------------------


class HealthRead(BaseModel):
    status: str
    version: str
