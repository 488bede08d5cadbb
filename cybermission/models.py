"""Every table, imported in one place so metadata (Alembic, tests) sees them all."""

from cybermission.findings.models import Finding, FindingStatus, Severity
from cybermission.inventory.models import (
    ChangeEvent,
    ChangeKind,
    Device,
    DeviceType,
    IPAddress,
    Manufacturer,
    Service,
)
from cybermission.scans.models import ObservationRecord, ScanRun, ScanStatus, Scope

__all__ = [
    "ChangeEvent",
    "ChangeKind",
    "Device",
    "DeviceType",
    "Finding",
    "FindingStatus",
    "IPAddress",
    "Manufacturer",
    "ObservationRecord",
    "ScanRun",
    "ScanStatus",
    "Scope",
    "Service",
    "Severity",
]
