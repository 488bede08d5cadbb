"""The dashboard: every number of the page in one answer."""

from datetime import datetime

from api.schemas import ReadModel
from cybermission.scans.models import ScanStatus


class CountRead(ReadModel):
    label: str
    count: int


class SiteFindingsRead(ReadModel):
    site: str
    counts: dict[str, int]  # severity -> active findings
    total: int


class RecentChangeRead(ReadModel):
    id: int
    at: datetime
    kind: str
    severity: str | None
    summary: str


class RunningScanRead(ReadModel):
    id: str
    status: ScanStatus
    targets: list[str]
    started_at: datetime | None
    hosts_total: int
    hosts_swept: int
    hosts_live: int
    findings: int
    percent: int


class DashboardRead(ReadModel):
    generated_at: datetime
    devices_total: int
    findings_active: int
    findings_by_severity: list[CountRead]
    findings_by_site: list[SiteFindingsRead]
    devices_by_protocol: list[CountRead]
    devices_by_vendor: list[CountRead]
    recent_changes: list[RecentChangeRead]
    running_scans: list[RunningScanRead]
