"""Tables of what exists (NetBox-shaped): manufacturers, device types, devices, addresses, services,
and the change events between scans."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class Criticality(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Manufacturer(SQLModel, table=True):
    __tablename__ = "manufacturer"

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)


class DeviceType(SQLModel, table=True):
    __tablename__ = "device_type"
    __table_args__ = (UniqueConstraint("manufacturer_id", "model"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    manufacturer_id: str = Field(foreign_key="manufacturer.id", index=True)
    model: str = Field(max_length=200)
    product_code: str | None = Field(default=None, max_length=200)


class Device(SQLModel, table=True):
    """One physical or logical device; gateways carry sub-devices (Modbus units) via parent_id."""

    __tablename__ = "device"
    # Organisation-scoped listings (API tokens of one partner).
    __table_args__ = (
        Index("ix_device_organization_id_site_id_id", "organization_id", "site_id", "id"),
        # Identity resolution looks serials up inside one organisation (inventory/identity.py).
        Index("ix_device_organization_id_serial", "organization_id", "serial"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(default="", max_length=200)
    device_type_id: str | None = Field(default=None, foreign_key="device_type.id", index=True)
    parent_id: str | None = Field(default=None, foreign_key="device.id", index=True)
    # Identity as last observed, denormalised for reads; provenance says which probe said what.
    vendor: str | None = Field(default=None, max_length=200)
    product: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    firmware: str | None = Field(default=None, max_length=200)
    serial: str | None = Field(default=None, max_length=200, index=True)
    role: str | None = Field(default=None, max_length=100)
    unit_id: int | None = None
    # The organisation that owns the device: the partition identity resolution never crosses
    # (set when the device is first seen and never moved); where in it the device was last seen
    # (from the scope that covered its address) and how much it matters; criticality is set by
    # people and kept across rescans.
    organization_id: str | None = Field(default=None, foreign_key="organization.id", index=True)
    site_id: str | None = Field(default=None, foreign_key="site.id", index=True)
    zone_id: str | None = Field(default=None, foreign_key="zone.id", index=True)
    criticality: Criticality | None = Field(default=None, sa_type=enum_type(Criticality))
    provenance: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Consecutive complete scans of its scope that did not see it (inventory/absence.py); set when
    # that count reached the ``absent_after_scans`` setting, cleared when it answers again.
    absent_scans: int = 0
    unreachable_since: datetime | None = Field(default=None, sa_type=UTCDateTime)


def _unique_per_organization(table: str, column: str) -> tuple[Index, Index]:
    """``column`` is unique inside each organisation, and among rows placed in none (NULLs are
    distinct in a plain unique index, hence the partial one)."""
    unplaced = text("organization_id IS NULL")
    return (
        Index(f"ix_{table}_organization_id_{column}", "organization_id", column, unique=True),
        Index(
            f"ix_{table}_{column}_unplaced",
            column,
            unique=True,
            sqlite_where=unplaced,
            postgresql_where=unplaced,
        ),
    )


class Interface(SQLModel, table=True):
    """A network interface known by its MAC address: the same MAC on two addresses is one device."""

    __tablename__ = "interface"
    __table_args__ = _unique_per_organization("interface", "mac")

    id: str = Field(default_factory=new_id, primary_key=True)
    device_id: str = Field(foreign_key="device.id", index=True)
    # The device's organisation: the same MAC in two organisations is two interfaces.
    organization_id: str | None = Field(default=None, foreign_key="organization.id")
    # Lower-case, colon-separated (normalised by the inventory before it is stored).
    mac: str = Field(max_length=17, index=True)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class IPAddress(SQLModel, table=True):
    __tablename__ = "ip_address"
    # Private ranges are reused: one address in two organisations is two rows, two devices.
    __table_args__ = _unique_per_organization("ip_address", "address")

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str | None = Field(default=None, foreign_key="organization.id")
    address: str = Field(max_length=64, index=True)
    device_id: str = Field(foreign_key="device.id", index=True)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Service(SQLModel, table=True):
    __tablename__ = "service"
    __table_args__ = (UniqueConstraint("device_id", "port", "transport", "protocol"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    device_id: str = Field(foreign_key="device.id", index=True)
    address: str = Field(max_length=64)
    port: int
    transport: str = Field(max_length=8)
    protocol: str = Field(max_length=50)
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # False once rescans of this port found it closed ``absent_after_scans`` times in a row
    # (absent_scans counts them); the row stays for history and findings.
    is_open: bool = True
    absent_scans: int = 0
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ChangeKind(StrEnum):
    DEVICE_NEW = "device-new"
    DEVICE_GONE = "device-gone"  # unreachable: not seen by consecutive complete scans
    DEVICE_BACK = "device-back"  # answered again after it was marked unreachable
    # A serial and a MAC name two different devices: neither is merged, a person looks.
    IDENTITY_CONFLICT = "identity-conflict"
    ATTRIBUTE_CHANGED = "attribute-changed"
    SERVICE_OPENED = "service-opened"
    SERVICE_CLOSED = "service-closed"


class ChangeEvent(SQLModel, table=True):
    __tablename__ = "change_event"

    id: str = Field(default_factory=new_id, primary_key=True)
    device_id: str = Field(foreign_key="device.id", index=True)
    scan_run_id: str | None = Field(default=None, foreign_key="scan_run.id", index=True)
    kind: ChangeKind = Field(sa_type=enum_type(ChangeKind))
    field: str | None = Field(default=None, max_length=50)
    old_value: str | None = Field(default=None, max_length=500)
    new_value: str | None = Field(default=None, max_length=500)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
