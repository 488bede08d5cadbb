"""Tables of the territory: what organisations share with the coordinator, campaigns and who was
told of them."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, UniqueConstraint
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


class CampaignKind(StrEnum):
    """What a campaign tracks: the findings of one advisory, one rule, one protocol, or the
    devices of one vendor."""

    ADVISORY = "advisory"  # findings of rule "advisory:<ICSA id>"
    RULE = "rule"  # findings of one rule
    PROTOCOL = "protocol"  # findings on services of one protocol
    VENDOR = "vendor"  # findings on devices of one vendor (case-insensitive)


class Campaign(SQLModel, table=True):
    """A territory-wide push to fix one thing, opened by an advisory import or the coordinator."""

    __tablename__ = "campaign"
    __table_args__ = (UniqueConstraint("kind", "subject"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    kind: CampaignKind = Field(sa_type=enum_type(CampaignKind))
    subject: str = Field(max_length=200)
    title: str = Field(max_length=300)
    opened_by: str = Field(max_length=100)
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_by: str | None = Field(default=None, max_length=100)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CampaignNotice(SQLModel, table=True):
    """That an organisation was told of a campaign (once), with how many of its devices then."""

    __tablename__ = "campaign_notice"
    __table_args__ = (UniqueConstraint("campaign_id", "organization_id"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    organization_id: str = Field(foreign_key="organization.id", index=True)
    devices: int
    notified_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
