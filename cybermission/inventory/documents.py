"""The asset document: how a device and its services are written out, once for every reader.

Rules read an asset inside their subject document, events carry one in their payload, the run
report lists them, the CLI prints them and the exports write them (DESIGN.md §4). Each of those
shapes is a selection of :func:`asset_fields` (and :func:`service_fields`), so a field is named,
read and converted in one place, and a new field reaches every shape that asks for it.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from cybermission.inventory.models import Device, Service

# A device or a service as an ORM object, or as a row of some of its columns (readers that
# select plain columns for speed, such as the run report): each field is read by its name.
DeviceLike = Device | Row[tuple[object, ...]]
ServiceLike = Service | Row[tuple[object, ...]]

ASSET_TIMES = ("first_seen_at", "last_seen_at")
# Every field of the document, in the order the exports write them (their columns).
ASSET_FIELDS = (
    "id",
    "name",
    "parent_id",
    "unit_id",
    "vendor",
    "product",
    "model",
    "firmware",
    "serial",
    "role",
    "criticality",
    "organization_id",
    "site_id",
    "zone_id",
    *ASSET_TIMES,
)
# What a device says it is: the fields its own identification protocol fills.
IDENTITY_FIELDS = ("vendor", "product", "model", "firmware", "serial")

# A service's fields: ``open`` is the row's ``is_open``.
SERVICE_FIELDS = ("address", "port", "transport", "protocol", "open", "facts", "last_seen_at")


def asset_fields(
    device: DeviceLike, fields: Sequence[str] = ASSET_FIELDS, *, text_times: bool = False
) -> dict[str, Any]:
    """``fields`` of the device's document, in that order. The criticality is its plain text;
    timestamps stay datetimes unless ``text_times`` asks for ISO 8601 (exports, events)."""
    document: dict[str, Any] = {}
    for name in fields:
        value = getattr(device, name)
        if name == "criticality" and value is not None:
            value = str(value)
        elif text_times and isinstance(value, datetime):
            value = value.isoformat()
        document[name] = value
    return document


def service_fields(service: ServiceLike, fields: Sequence[str] = SERVICE_FIELDS) -> dict[str, Any]:
    """``fields`` of one service of a device, in that order."""
    return {name: getattr(service, "is_open" if name == "open" else name) for name in fields}


def service_labels(services: Sequence[Service]) -> list[str]:
    """The open services as ``port/transport/protocol`` (exports: CSV cells, CycloneDX)."""
    return [f"{s.port}/{s.transport}/{s.protocol}" for s in services if s.is_open]
