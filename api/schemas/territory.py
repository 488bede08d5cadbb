"""The coordinator's view of the territory, and what organisations share with it."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.schemas import ReadModel, RequestModel
from cybermission.sites.models import Sector
from cybermission.territory.models import ShareScope

# A number, or "withheld" when fewer organisations than the threshold stand behind it.
Shown = int | Literal["withheld"]
DeviceClass = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


class MetricsRead(BaseModel):
    devices: Shown
    open_findings: dict[str, Shown] = Field(description="Open and acknowledged, by severity")
    devices_past_end_of_life: Shown = Field(
        description="Devices with an active finding of a rule tagged end-of-life"
    )
    unpatched_kev_findings: Shown = Field(
        description="Active findings of advisories on CISA's known-exploited list"
    )
    exposed_protocols: dict[str, Shown] = Field(
        description="Devices with an open service of each protocol"
    )


class TerritoryTotalRead(BaseModel):
    organizations: int
    metrics: MetricsRead


class SectorExposureRead(BaseModel):
    sector: Sector
    organizations: int
    metrics: MetricsRead


class OrganizationExposureRead(BaseModel):
    """An organisation's own numbers: withheld unless it shares; a class share shows the numbers
    of its shared devices only."""

    id: str
    slug: str
    name: str
    sector: Sector
    share: Literal["none", "device-classes", "full"]
    device_classes: list[str]
    metrics: MetricsRead


class ExposureRead(BaseModel):
    generated_at: datetime
    threshold: int
    territory: TerritoryTotalRead
    sectors: list[SectorExposureRead]
    organizations: list[OrganizationExposureRead]


class TrendPointRead(BaseModel):
    at: datetime
    territory: dict[str, Shown] = Field(description="Open findings by severity")
    sectors: dict[str, dict[str, Shown]]


class TrendsRead(BaseModel):
    threshold: int
    points: list[TrendPointRead]


class ShareCreate(RequestModel):
    scope: ShareScope
    device_classes: list[DeviceClass] = Field(default_factory=list, max_length=20)


class ShareRead(ReadModel):
    id: str
    organization_id: str
    scope: ShareScope
    device_classes: list[str]
    created_by: str
    created_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None


class SharedDeviceRead(BaseModel):
    """A device its organisation shares with the coordinator."""

    id: str
    name: str
    vendor: str | None
    product: str | None
    model: str | None
    firmware: str | None
    serial: str | None
    addresses: list[str]
    protocols: list[str]
    open_findings: int
