"""Campaigns: as the coordinator opens and reads them, and as an organisation is told of them."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from api.schemas import RequestModel
from api.schemas.territory import Shown
from cybermission.territory.models import CampaignKind

Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CampaignCreate(RequestModel):
    kind: CampaignKind
    subject: Subject = Field(
        description="The advisory id, rule id, protocol or vendor the campaign is about"
    )
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)] = ""


class CampaignNumbersRead(BaseModel):
    organizations_affected: Shown
    devices_affected: Shown
    findings_active: Shown
    findings_resolved: Shown


class CampaignPointRead(BaseModel):
    at: datetime
    territory: CampaignNumbersRead
    sectors: dict[str, CampaignNumbersRead]


class CampaignRead(BaseModel):
    id: str
    kind: CampaignKind
    subject: str
    title: str
    opened_by: str
    opened_at: datetime
    closed_by: str | None
    closed_at: datetime | None
    organizations_notified: Shown
    now: CampaignNumbersRead


class CampaignDetailRead(CampaignRead):
    progress: list[CampaignPointRead]
    shared_devices: list[str] = Field(
        description="Affected devices of organisations that share them with the coordinator"
    )


class CampaignNoticeRead(BaseModel):
    """A campaign as the organisation it told reads it: its own devices only."""

    id: str
    kind: CampaignKind
    subject: str
    title: str
    opened_at: datetime
    closed_at: datetime | None
    notified_at: datetime
    devices_at_notice: int
    devices_active: list[str]
