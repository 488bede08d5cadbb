"""Tables of organisations (partners), the networks allocated to them, sites (a plant, a district)
and zones (a network cell)."""

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow

# Re-exported: the services and the API import the exposure with the zone table.
from cybermission.sites.exposure import ZoneExposure as ZoneExposure
from cybermission.sites.sectors import Sector as Sector


class Organization(SQLModel, table=True):
    """A partner that authorised scans; tokens and data are isolated per organisation."""

    __tablename__ = "organization"

    id: str = Field(default_factory=new_id, primary_key=True)
    slug: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    # The territory's aggregates group organisations by it (cybermission/territory/README.md).
    sector: Sector = Field(
        default=Sector.OTHER,
        sa_type=enum_type(Sector),
        sa_column_kwargs={"server_default": Sector.OTHER.value},
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Allocation(SQLModel, table=True):
    """A network a global admin allocated to an organisation: its scopes must lie inside one.

    Two organisations may hold overlapping allocations (private ranges are reused from one partner
    to the next); what keeps them apart is that each run scans with its own organisation's scopes.
    """

    __tablename__ = "allocation"
    __table_args__ = (UniqueConstraint("organization_id", "cidr"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str = Field(foreign_key="organization.id", index=True)
    cidr: str = Field(max_length=64)
    reference: str = Field(default="", max_length=500)
    created_by: str = Field(default="cli", max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Site(SQLModel, table=True):
    """A place scanned as one: a plant, a water works, a district's street equipment."""

    __tablename__ = "site"
    # Unique per organisation: a 409 never tells one organisation another's site names.
    # A unique index, not a constraint: adding it does not make SQLite rebuild the table.
    __table_args__ = (
        Index("ix_site_organization_id_slug", "organization_id", "slug", unique=True),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str = Field(foreign_key="organization.id", index=True)
    slug: str = Field(max_length=64, index=True)
    name: str = Field(max_length=200)
    # IANA zone: schedules and scan windows are in the site's local time.
    timezone: str = Field(default="UTC", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Zone(SQLModel, table=True):
    """A network zone of a site (IEC 62443 zone, or a Purdue level)."""

    __tablename__ = "zone"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    site_id: str = Field(foreign_key="site.id", index=True)
    name: str = Field(max_length=100)
    purdue_level: int | None = Field(default=None, ge=0, le=5)
    exposure: ZoneExposure = Field(default=ZoneExposure.CONTROL, sa_type=enum_type(ZoneExposure))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
