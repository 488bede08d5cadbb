"""Advisories: an imported CISA advisory, one with the products it affects, and the matcher's
question (identities) and answer (matches per identity)."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.schemas import ReadModel, RequestModel
from cybermission.findings.advisories.lookup import MAX_IDENTITIES, MAX_NAMES, MAX_TEXT


class AdvisoryRead(ReadModel):
    id: str
    title: str
    cves: list[str]
    cvss_score: float | None
    cvss_vector: str | None
    published_at: datetime | None
    updated_at: datetime | None
    revision: str
    kev: bool
    source: str
    imported_at: datetime


class AdvisoryProductRead(ReadModel):
    product_id: str
    vendor: str
    product: str
    version: str | None
    branch_path: list[str]
    cves: list[str]
    cvss_score: float | None


class AdvisoryDetailRead(AdvisoryRead):
    """One advisory with the products it affects."""

    products: list[AdvisoryProductRead]


# The matcher's limits (lookup.py), the same for the CLI's identities file.
_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)]


class DeviceIdentityCreate(RequestModel):
    """A device as the matcher reads it: its maker, firmware and every name it goes by."""

    vendor: _Text
    firmware: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = None
    names: Annotated[list[_Text], Field(min_length=1, max_length=MAX_NAMES)]


class AdvisoryMatchCreate(RequestModel):
    """Identities to match against every stored advisory (at most 1,000 at once)."""

    devices: Annotated[list[DeviceIdentityCreate], Field(min_length=1, max_length=MAX_IDENTITIES)]


class AdvisoryMatchRead(BaseModel):
    """One advisory that affects the identity, how sure (high, medium, low) and why."""

    advisory_id: str
    title: str
    cves: list[str]
    cvss_score: float | None
    cvss_vector: str | None
    kev: bool
    confidence: Literal["high", "medium", "low"]
    reason: str
    branch_path: list[str]
    product_id: str | None
    quote: str | None = None


class IdentityMatchesRead(BaseModel):
    identity: DeviceIdentityCreate
    matches: list[AdvisoryMatchRead]
