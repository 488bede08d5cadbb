"""Every table, imported in one place so metadata (Alembic, tests) sees them all."""

from cybermission.events import Event, EventKind
from cybermission.findings.models import Finding, FindingStatus, Severity
from cybermission.inventory.models import (
    ChangeEvent,
    ChangeKind,
    Criticality,
    Device,
    DeviceType,
    IPAddress,
    Manufacturer,
    Service,
)
from cybermission.scans.models import ObservationRecord, ScanRun, ScanStatus, Scope
from cybermission.sites.models import Organization, Site, Zone, ZoneExposure

__all__ = [
    "ChangeEvent",
    "ChangeKind",
    "Criticality",
    "Device",
    "DeviceType",
    "Event",
    "EventKind",
    "Finding",
    "FindingStatus",
    "IPAddress",
    "Manufacturer",
    "ObservationRecord",
    "Organization",
    "ScanRun",
    "ScanStatus",
    "Scope",
    "Service",
    "Severity",
    "Site",
    "Zone",
    "ZoneExposure",
]
