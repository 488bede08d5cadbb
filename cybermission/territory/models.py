"""Tables of the territory: what organisations share with the coordinator."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class ShareScope(StrEnum):
    """How much of its inventory an organisation shows the coordinator."""

    DEVICE_CLASSES = "device-classes"  # devices that answer one of the named protocols
    FULL = "full"  # every device, with its findings


class CoordinatorShare(SQLModel, table=True):
    """An organisation's decision to show the coordinator more than aggregates: who, when, what;
    revoked (``revoked_at``) rather than deleted, so the record of what was shown stays."""

    __tablename__ = "coordinator_share"

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str = Field(foreign_key="organization.id", index=True)
    scope: ShareScope = Field(sa_type=enum_type(ShareScope))
    # For DEVICE_CLASSES: protocol names (modbus, bacnet, ...); empty for FULL.
    device_classes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_by: str | None = Field(default=None, max_length=100)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
