"""Findings read through the device they are on: listed, fetched and counted by placement.

A finding has no organisation of its own: its device's organisation decides who sees it, and its
device's site and zone where it is. These reads join the findings and the inventory domains, so
they live here, in the layer that composes domains (the domains never import each other). The
API's finding list, its exports and its dashboard read findings through this module.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, case, func
from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from cybermission.errors import NotFoundError
from cybermission.findings.events import FindingPlace, FindingPlaceOf
from cybermission.findings.models import Confidence, Finding, FindingStatus, Severity
from cybermission.findings.service import ACTIVE_STATUSES
from cybermission.inventory.models import Device
from cybermission.inventory.queries import get_device, get_devices_by_id, get_services_by_id
from cybermission.pagination import SortValue, keyset_page
from cybermission.sites.models import Site
from cybermission.visibility import visible

SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class FindingSort(StrEnum):
    """Sort keys; a leading "-" is descending. Ties are broken by id, in the same direction."""

    FIRST_SEEN = "first_seen_at"
    FIRST_SEEN_DESC = "-first_seen_at"
    LAST_SEEN = "last_seen_at"
    LAST_SEEN_DESC = "-last_seen_at"
    SCORE = "score"
    SCORE_DESC = "-score"
    SEVERITY = "severity"
    SEVERITY_DESC = "-severity"


@dataclass(frozen=True, slots=True)
class FindingFilters:
    """What a finding list is narrowed to (every filter optional, ANDed). ``severity``,
    ``confidence`` and ``status`` are any-of; ``*_after`` bounds are inclusive, ``*_before``
    exclusive."""

    severity: Sequence[Severity] | None = None
    confidence: Sequence[Confidence] | None = None
    status: Sequence[FindingStatus] | None = None
    rule_id: str | None = None
    device_id: str | None = None
    site_id: str | None = None
    zone_id: str | None = None
    protocol: str | None = None
    min_score: float | None = None
    first_seen_after: datetime | None = None
    first_seen_before: datetime | None = None
    last_seen_after: datetime | None = None
    last_seen_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class PlacedFinding:
    """A finding with its device and the address of the service it was found on (if any)."""

    finding: Finding
    device: Device
    address: str | None


def _severity_rank() -> ColumnElement[int]:
    # Severity is stored as its word; order by rank, not alphabetically.
    return case(
        *((col(Finding.severity) == sev, rank) for sev, rank in SEVERITY_RANK.items()),
        else_=-1,
    )


def _sort_key(sort: FindingSort) -> tuple[Any, bool]:
    """The SQL expression to order by, and whether descending."""
    name = sort.value.lstrip("-")
    descending = sort.value.startswith("-")
    if name == "severity":
        return _severity_rank(), descending
    column: InstrumentedAttribute[Any] = getattr(Finding, name)
    return col(column), descending


def _sort_value(finding: Finding, sort: FindingSort) -> SortValue:
    name = sort.value.lstrip("-")
    if name == "severity":
        return SEVERITY_RANK[finding.severity]
    value: SortValue = getattr(finding, name)
    return value


def _placed_query(visible_to: str | None, filters: FindingFilters) -> SelectOfScalar[Finding]:
    """Findings ``visible_to`` sees that match ``filters`` (no order, no limit)."""
    query = select(Finding)
    if visible_to is not None or filters.site_id or filters.zone_id:
        # Placement lives on the device: one indexed join, only when asked for.
        query = query.join(Device, col(Device.id) == col(Finding.device_id))
        query = query.where(visible(col(Device.organization_id), visible_to))
        if filters.site_id is not None:
            query = query.where(col(Device.site_id) == filters.site_id)
        if filters.zone_id is not None:
            query = query.where(col(Device.zone_id) == filters.zone_id)
    if filters.severity:
        query = query.where(col(Finding.severity).in_(filters.severity))
    if filters.status:
        query = query.where(col(Finding.status).in_(filters.status))
    if filters.confidence:
        query = query.where(col(Finding.confidence).in_(filters.confidence))
    if filters.rule_id is not None:
        query = query.where(col(Finding.rule_id) == filters.rule_id)
    if filters.device_id is not None:
        query = query.where(col(Finding.device_id) == filters.device_id)
    if filters.protocol is not None:
        query = query.where(col(Finding.protocol) == filters.protocol)
    if filters.min_score is not None:
        query = query.where(col(Finding.score) >= filters.min_score)
    if filters.first_seen_after is not None:
        query = query.where(col(Finding.first_seen_at) >= filters.first_seen_after)
    if filters.first_seen_before is not None:
        query = query.where(col(Finding.first_seen_at) < filters.first_seen_before)
    if filters.last_seen_after is not None:
        query = query.where(col(Finding.last_seen_at) >= filters.last_seen_after)
    if filters.last_seen_before is not None:
        query = query.where(col(Finding.last_seen_at) < filters.last_seen_before)
    return query


def list_placed_findings(
    *,
    session: Session,
    visible_to: str | None,
    filters: FindingFilters,
    sort: FindingSort = FindingSort.FIRST_SEEN,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[Finding], str | None]:
    """One keyset page of the findings ``visible_to`` sees that match ``filters``, in ``sort``
    order, and the next page's cursor (None on the last page; a cursor names its sort)."""
    key, descending = _sort_key(sort)
    return keyset_page(
        session,
        _placed_query(visible_to, filters),
        sort=sort.value,
        key=key,
        ident=col(Finding.id),
        value_of=lambda f: _sort_value(f, sort),
        descending=descending,
        limit=limit,
        cursor=cursor,
    )


def get_placed_finding_or_raise(
    *, session: Session, finding_id: str, visible_to: str | None
) -> Finding:
    """The finding if ``visible_to`` sees its device; otherwise, as when it does not exist,
    :class:`NotFoundError`."""
    finding = session.get(Finding, finding_id)
    if finding is None or (
        get_device(session=session, device_id=finding.device_id, visible_to=visible_to) is None
    ):
        raise NotFoundError(f"no finding with id {finding_id!r}")
    return finding


def finding_places(*, session: Session, devices: Iterable[Device] = ()) -> FindingPlaceOf:
    """Where each device is, for the findings service's events: ``devices`` the caller holds
    (a scan batch's), the others read on first need and remembered. Reading never flushes the
    session: the findings service asks while it changes findings (one flush per finding was
    the largest cost of a scan's writes, issue 12)."""
    known = {
        d.id: FindingPlace(organization_id=d.organization_id, site_id=d.site_id) for d in devices
    }

    def place_of(device_id: str) -> FindingPlace:
        if device_id not in known:
            with session.no_autoflush:
                device = session.get(Device, device_id)
            known[device_id] = (
                FindingPlace(organization_id=device.organization_id, site_id=device.site_id)
                if device is not None
                else FindingPlace()
            )
        return known[device_id]

    return place_of


def place_findings(*, session: Session, findings: Sequence[Finding]) -> list[PlacedFinding]:
    """Each finding with its device and its service's address, in two reads for the lot."""
    devices = get_devices_by_id(session=session, device_ids={f.device_id for f in findings})
    services = get_services_by_id(
        session=session, service_ids={f.service_id for f in findings if f.service_id}
    )
    return [
        PlacedFinding(
            finding=f,
            device=devices[f.device_id],
            # Advisory findings are on the device, not a service: the address it was seen at.
            address=services[f.service_id].address
            if f.service_id in services
            else _evidence_address(f),
        )
        for f in findings
    ]


def _evidence_address(finding: Finding) -> str | None:
    address = (finding.evidence or {}).get("address")
    return address if isinstance(address, str) else None


def count_active_findings_by_severity(
    *, session: Session, visible_to: str | None
) -> dict[Severity, int]:
    """Open and acknowledged findings ``visible_to`` sees, by severity (absent: none)."""
    query = (
        select(Finding.severity, func.count())
        .join(Device, col(Device.id) == col(Finding.device_id))
        .where(col(Finding.status).in_(ACTIVE_STATUSES))
        .where(visible(col(Device.organization_id), visible_to))
        .group_by(col(Finding.severity))
    )
    return {Severity(severity): count for severity, count in session.exec(query)}


def count_active_findings_by_site(
    *, session: Session, visible_to: str | None
) -> list[tuple[str | None, str | None, Severity, int]]:
    """(site id, site name, severity, open and acknowledged findings) ``visible_to`` sees; the
    site is None for findings on devices placed in no site."""
    query = (
        select(Device.site_id, Site.name, Finding.severity, func.count())
        .join(Device, col(Device.id) == col(Finding.device_id))
        .join(Site, col(Site.id) == col(Device.site_id), isouter=True)
        .where(col(Finding.status).in_(ACTIVE_STATUSES))
        .where(visible(col(Device.organization_id), visible_to))
        .group_by(col(Device.site_id), col(Site.name), col(Finding.severity))
    )
    return [
        (site_id, site, Severity(severity), count)
        for site_id, site, severity, count in session.exec(query)
    ]
