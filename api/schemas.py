"""Request and response bodies of the HTTP API (the Create/Read ladder over the core tables)."""

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cybermission.auth.models import Role
from cybermission.events import EventKind
from cybermission.findings.models import FindingStatus, Severity
from cybermission.inventory.models import ChangeKind, Criticality
from cybermission.scans.models import ScanStatus
from cybermission.sites.models import ZoneExposure

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
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Slug = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
]


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
    organization_id: str | None
    site_id: str | None
    zone_id: str | None
    criticality: Criticality | None
    first_seen_at: datetime
    last_seen_at: datetime


class DeviceUpdate(BaseModel):
    """What people set on an asset; the score of its findings weighs the criticality."""

    model_config = ConfigDict(extra="forbid")

    criticality: Criticality | None


class ServiceRead(_FromRow):
    id: str
    address: str
    port: int
    transport: str
    protocol: str
    facts: dict[str, Any]
    is_open: bool
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
    accepted_until: datetime | None


class FindingUpdate(BaseModel):
    """A triage decision; every change is audited with who made it and why."""

    model_config = ConfigDict(extra="forbid")

    status: FindingStatus
    reason: str = Field(min_length=1, max_length=2000)
    until: datetime | None = Field(
        default=None, description="Required for risk-accepted: when the acceptance lapses."
    )


class FindingTransitionRead(_FromRow):
    id: str
    finding_id: str
    from_status: FindingStatus | None
    to_status: FindingStatus
    actor: str
    reason: str
    until: datetime | None
    at: datetime


# --- rules --------------------------------------------------------------------------------------


class RuleRead(BaseModel):
    id: str
    name: str
    severity: Severity
    description: str
    remediation: str
    references: list[str]
    tags: list[str]
    protocols: list[str]
    probes: list[str]


# --- advisories ---------------------------------------------------------------------------------


class AdvisoryRead(_FromRow):
    id: str
    title: str
    cves: list[str]
    cvss_score: float | None
    cvss_vector: str | None
    published_at: datetime | None
    updated_at: datetime | None
    revision: str
    kev: bool
    source: str
    imported_at: datetime


class AdvisoryProductRead(_FromRow):
    product_id: str
    vendor: str
    product: str
    version: str | None
    branch_path: list[str]
    cves: list[str]
    cvss_score: float | None


class AdvisoryDetail(AdvisoryRead):
    products: list[AdvisoryProductRead]


# --- tokens -------------------------------------------------------------------------------------


class TokenCreate(BaseModel):
    """A new API token; an organisation-scoped admin can only create tokens of its organisation."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    role: Role
    organization_id: Id | None = None
    expires_at: datetime | None = None


class TokenRead(_FromRow):
    id: str
    name: str
    role: Role
    organization_id: str | None
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenIssued(TokenRead):
    """The only time the secret is shown: store it now, the service keeps only its hash."""

    token: str


# --- organisations, sites, zones ----------------------------------------------------------------


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug
    name: Name


class OrganizationRead(_FromRow):
    id: str
    slug: str
    name: str
    created_at: datetime


class SiteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organization_id: Id
    slug: Slug
    name: Name
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"


class SiteRead(_FromRow):
    id: str
    organization_id: str
    slug: str
    name: str
    timezone: str
    created_at: datetime


class ZoneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    purdue_level: int | None = Field(default=None, ge=0, le=5)
    exposure: ZoneExposure = ZoneExposure.CONTROL


class ZoneRead(_FromRow):
    id: str
    site_id: str
    name: str
    purdue_level: int | None
    exposure: ZoneExposure
    created_at: datetime


# --- events -------------------------------------------------------------------------------------


class EventRead(_FromRow):
    id: int
    kind: EventKind
    at: datetime
    organization_id: str | None
    site_id: str | None
    scan_run_id: str | None
    subject_id: str | None
    severity: str | None
    payload: dict[str, Any]


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
    site_id: Id | None = None
    zone_id: Id | None = None


class ScopeUpdate(BaseModel):
    """Fields to change on a scope; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    cidrs: list[Cidr] | None = Field(default=None, min_length=1, max_length=MAX_SCOPE_NETWORKS)
    excludes: list[Cidr] | None = Field(default=None, max_length=MAX_SCOPE_NETWORKS)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    reference: str | None = Field(default=None, max_length=500)
    site_id: Id | None = None
    zone_id: Id | None = None


class ScopeRead(_FromRow):
    id: str
    name: str
    cidrs: list[str]
    excludes: list[str]
    valid_from: datetime | None
    valid_until: datetime | None
    reference: str
    site_id: str | None
    zone_id: str | None
    created_at: datetime


# --- health -------------------------------------------------------------------------------------


class HealthRead(BaseModel):
    status: str
    version: str
