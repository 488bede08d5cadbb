"""Findings: filtered (severity, confidence, state, rule, site, zone, protocol, seen ranges),
sorted, paged by cursor; one finding; triage through the audited lifecycle."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.deps import Reader, SessionDep, Triager
from api.schemas import MAX_PAGE, Page
from api.schemas.findings import FindingRead, FindingTransitionRead, FindingUpdate
from cybermission.db import utcnow
from cybermission.findings.models import Confidence, FindingStatus, Severity
from cybermission.findings.service import list_transitions, transition_finding
from cybermission.scans.placed_findings import (
    FindingFilters,
    FindingSort,
    finding_places,
    get_placed_finding_or_raise,
    list_placed_findings,
)

router = APIRouter(prefix="/findings", tags=["findings"])

FindingId = Annotated[str, Path(max_length=64)]


def finding_filters(
    severity: Annotated[list[Severity] | None, Query(description="Any of these")] = None,
    status: Annotated[list[FindingStatus] | None, Query(description="Any of these")] = None,
    confidence: Annotated[
        list[Confidence] | None,
        Query(description="Any of these (advisory matches; rule findings have none)"),
    ] = None,
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
    """The query parameters shared by the list and the exports (every one optional, ANDed)."""
    return FindingFilters(
        severity=severity,
        confidence=confidence,
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


@router.get("", summary="Findings, filtered and sorted, one page at a time")
def get_findings(
    session: SessionDep,
    caller: Reader,
    filters: FiltersDep,
    sort: FindingSort = FindingSort.FIRST_SEEN,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[FindingRead]:
    rows, next_cursor = list_placed_findings(
        session=session,
        visible_to=caller.organization_id,
        filters=filters,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return Page(items=[FindingRead.model_validate(f) for f in rows], next_cursor=next_cursor)


@router.get(
    "/{finding_id}", summary="One finding", responses={404: {"description": "No such finding"}}
)
def get_finding(finding_id: FindingId, session: SessionDep, caller: Reader) -> FindingRead:
    finding = get_placed_finding_or_raise(
        session=session, finding_id=finding_id, visible_to=caller.organization_id
    )
    return FindingRead.model_validate(finding)


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
    finding = get_placed_finding_or_raise(
        session=session, finding_id=finding_id, visible_to=caller.organization_id
    )
    changed = transition_finding(
        session,
        finding_id=finding.id,
        to=body.status,
        actor=caller.name,
        reason=body.reason,
        until=body.until,
        now=utcnow(),
        place_of=finding_places(session=session),
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
    finding = get_placed_finding_or_raise(
        session=session, finding_id=finding_id, visible_to=caller.organization_id
    )
    return [
        FindingTransitionRead.model_validate(t)
        for t in list_transitions(session, finding_id=finding.id)
    ]
