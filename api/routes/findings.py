"""Findings: what is wrong, filtered by severity, rule, status and device, a page at a time."""

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep
from api.schemas import MAX_PAGE, FindingRead, Page
from cybermission.findings.models import FindingStatus, Severity
from cybermission.findings.service import list_findings

router = APIRouter(prefix="/findings", tags=["findings"])


@router.get("", summary="Findings, filtered, one page at a time")
def get_findings(
    session: SessionDep,
    severity: Severity | None = None,
    rule_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    status: FindingStatus | None = None,
    device_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[FindingRead]:
    page = list_findings(
        session,
        severity=severity,
        rule_id=rule_id,
        status=status,
        device_id=device_id,
        limit=limit,
        cursor=cursor,
    )
    return Page(
        items=[FindingRead.model_validate(f) for f in page.items], next_cursor=page.next_cursor
    )
