"""Organisations (partners), their sites and the sites' zones."""

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from api.schemas import Id, Name, ReadModel, RequestModel, Slug
from cybermission.sites.models import Sector, ZoneExposure


class OrganizationCreate(RequestModel):
    slug: Slug
    name: Name
    sector: Sector = Sector.OTHER


class OrganizationUpdate(RequestModel):
    sector: Sector


class OrganizationRead(ReadModel):
    id: str
    slug: str
    name: str
    sector: Sector
    created_at: datetime


class SiteCreate(RequestModel):
    organization_id: Id
    slug: Slug
    name: Name
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"


class SiteRead(ReadModel):
    id: str
    organization_id: str
    slug: str
    name: str
    timezone: str
    created_at: datetime


class ZoneCreate(RequestModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    purdue_level: int | None = Field(default=None, ge=0, le=5)
    exposure: ZoneExposure = ZoneExposure.CONTROL


class ZoneRead(ReadModel):
    id: str
    site_id: str
    name: str
    purdue_level: int | None
    exposure: ZoneExposure
    created_at: datetime
