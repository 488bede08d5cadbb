"""Advisories: an imported CISA advisory, and one with the products it affects."""

from datetime import datetime

from api.schemas import ReadModel


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
