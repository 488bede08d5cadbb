"""Findings: filtered (severity, state, rule, site, zone, protocol, seen ranges), sorted, paged
by cursor; one finding; triage through the audited lifecycle."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import ColumnElement, case
from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from api.deps import Reader, SessionDep, require
from api.pagination import SortValue, after, decode_cursor, encode_cursor
from api.schemas import MAX_PAGE, FindingRead, FindingTransitionRead, FindingUpdate, Page
from api.visibility import device_or_404
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.db import utcnow
from cybermission.errors import NotFoundError
from cybermission.findings.models import Finding, FindingStatus, Severity
from cybermission.findings.service import list_transitions, transition_finding
from cybermission.inventory.models import Device

router = APIRouter(prefix="/findings", tags=["findings"])

FindingId = Annotated[str, Path(max_length=64)]
Triager = Annotated[Principal, Depends(require(Permission.TRIAGE))]

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


def _severity_rank() -> ColumnElement[int]:
    # Severity is stored as its word; order by rank, not alphabetically.
    return case(
        *((col(Finding.severity) == sev, rank) for sev, rank in SEVERITY_RANK.items()),
        else_=-1,
    )


def sort_key(sort: FindingSort) -> tuple[Any, bool]:
    """The SQL expression to order by, and whether descending."""
    name = sort.value.lstrip("-")
    descending = sort.value.startswith("-")
    if name == "severity":
        return _severity_rank(), descending
    column: InstrumentedAttribute[Any] = getattr(Finding, name)
    return col(column), descending


def sort_value(finding: Finding, sort: FindingSort) -> SortValue:
    name = sort.value.lstrip("-")
    if name == "severity":
        return SEVERITY_RANK[finding.severity]
    value: SortValue = getattr(finding, name)
    return value


@dataclass(slots=True)
class FindingFilters:
    """Query parameters shared by the list and the exports (every one optional, ANDed)."""

    severity: list[Severity] | None
    status: list[FindingStatus] | None
    rule_id: str | None
    device_id: str | None
    site_id: str | None
    zone_id: str | None
    protocol: str | None
    min_score: float | None
    first_seen_after: datetime | None
    first_seen_before: datetime | None
    last_seen_after: datetime | None
    last_seen_before: datetime | None


def finding_filters(
    severity: Annotated[list[Severity] | None, Query(description="Any of these")] = None,
    status: Annotated[list[FindingStatus] | None, Query(description="Any of these")] = None,
    rule_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    device_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    site_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    zone_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    protocol: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
    min_score: Annotated[float | None, Query(ge=0, le=10)] = None,
    first_seen_after: datetime | None = None,
    first_seen_before: datetime | None = None,
    last_seen_after: datetime | None = None,
    last_seen_before: datetime | None = None,
) -> FindingFilters:
    return FindingFilters(
        severity=severity,
        status=status,
        rule_id=rule_id,
        device_id=device_id,
        site_id=site_id,
        zone_id=zone_id,
        protocol=protocol,
        min_score=min_score,
        first_seen_after=first_seen_after,
        first_seen_before=first_seen_before,
        last_seen_after=last_seen_after,
        last_seen_before=last_seen_before,
    )


FiltersDep = Annotated[FindingFilters, Depends(finding_filters)]


def finding_query(caller: Principal, filters: FindingFilters) -> SelectOfScalar[Finding]:
    """Findings the caller sees that match ``filters`` (no order, no limit)."""
    query = select(Finding)
    if caller.organization_id is not None or filters.site_id or filters.zone_id:
        # Placement lives on the device: one indexed join, only when asked for.
        query = query.join(Device, col(Device.id) == col(Finding.device_id))
        if caller.organization_id is not None:
            query = query.where(col(Device.organization_id) == caller.organization_id)
        if filters.site_id is not None:
            query = query.where(col(Device.site_id) == filters.site_id)
        if filters.zone_id is not None:
            query = query.where(col(Device.zone_id) == filters.zone_id)
    if filters.severity:
        query = query.where(col(Finding.severity).in_(filters.severity))
    if filters.status:
        query = query.where(col(Finding.status).in_(filters.status))
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


def finding_page(
    session: Session,
    caller: Principal,
    filters: FindingFilters,
    *,
    sort: FindingSort,
    limit: int,
    cursor: str | None,
) -> tuple[list[Finding], str | None]:
    """One keyset page of :func:`finding_query` in ``sort`` order, and the next page's cursor."""
    key, descending = sort_key(sort)
    query = finding_query(caller, filters)
    if cursor is not None:
        value, last_id = decode_cursor(cursor, sort=sort.value)
        query = query.where(after(key, col(Finding.id), value, last_id, descending=descending))
    ident = col(Finding.id)
    order = (key.desc(), ident.desc()) if descending else (key, ident)
    rows = list(session.exec(query.order_by(*order).limit(limit + 1)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(sort.value, sort_value(rows[-1], sort), rows[-1].id)


def finding_or_404(session: Session, caller: Principal, finding_id: str) -> Finding:
    finding = session.get(Finding, finding_id)
    if finding is None:
        raise NotFoundError(f"no finding with id {finding_id!r}")
    try:
        device_or_404(session, caller, finding.device_id)
    except NotFoundError:
        raise NotFoundError(f"no finding with id {finding_id!r}") from None
    return finding


@router.get("", summary="Findings, filtered and sorted, one page at a time")
def get_findings(
    session: SessionDep,
    caller: Reader,
    filters: FiltersDep,
    sort: FindingSort = FindingSort.FIRST_SEEN,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[FindingRead]:
    rows, next_cursor = finding_page(
        session, caller, filters, sort=sort, limit=limit, cursor=cursor
    )
    return Page(items=[FindingRead.model_validate(f) for f in rows], next_cursor=next_cursor)


@router.get(
    "/{finding_id}", summary="One finding", responses={404: {"description": "No such finding"}}
)
def get_finding(finding_id: FindingId, session: SessionDep, caller: Reader) -> FindingRead:
    return FindingRead.model_validate(finding_or_404(session, caller, finding_id))


@router.patch(
    "/{finding_id}",
    summary="Triage: move a finding to another state (audited)",
    responses={
        404: {"description": "No such finding"},
        409: {"description": "The transition is not allowed from the current state"},
    },
)
def patch_finding(
    finding_id: FindingId, body: FindingUpdate, session: SessionDep, caller: Triager
) -> FindingRead:
    finding = finding_or_404(session, caller, finding_id)
    changed = transition_finding(
        session,
        finding_id=finding.id,
        to=body.status,
        actor=caller.name,
        reason=body.reason,
        until=body.until,
        now=utcnow(),
    )
    return FindingRead.model_validate(changed)


@router.get(
    "/{finding_id}/transitions",
    summary="A finding's audit trail, oldest first",
    responses={404: {"description": "No such finding"}},
)
def get_finding_transitions(
    finding_id: FindingId, session: SessionDep, caller: Reader
) -> list[FindingTransitionRead]:
    finding = finding_or_404(session, caller, finding_id)
    return [
        FindingTransitionRead.model_validate(t)
        for t in list_transitions(session, finding_id=finding.id)
    ]
