"""Assets: a device, the criticality people set on it, its services and its change history."""

from datetime import datetime
from typing import Any

from api.schemas import ReadModel, RequestModel
from cybermission.inventory.models import ChangeKind, Criticality


class DeviceRead(ReadModel):
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
    # Set once complete scans of its scope missed it ``absent_after_scans`` times in a row.
    unreachable_since: datetime | None


class DeviceUpdate(RequestModel):
    """What people set on an asset; the score of its findings weighs the criticality."""

    criticality: Criticality | None


class ServiceRead(ReadModel):
    id: str
    address: str
    port: int
    transport: str
    protocol: str
    facts: dict[str, Any]
    is_open: bool
    first_seen_at: datetime
    last_seen_at: datetime


class ChangeEventRead(ReadModel):
    id: str
    scan_run_id: str | None
    kind: ChangeKind
    field: str | None
    old_value: str | None
    new_value: str | None
    at: datetime


class DeviceDetailRead(DeviceRead):
    """One asset with where it answers, what it runs, and what changed lately."""

    provenance: dict[str, Any]
    addresses: list[str]
    services: list[ServiceRead]
    recent_changes: list[ChangeEventRead]
