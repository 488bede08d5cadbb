"""Findings: a finding, a triage decision, and the audit trail of its states."""

from datetime import datetime
from typing import Any

from pydantic import Field

from api.schemas import ReadModel, RequestModel
from cybermission.findings.models import Confidence, FindingStatus, Severity


class FindingRead(ReadModel):
    id: str
    rule_id: str
    device_id: str
    service_id: str | None
    port: int | None
    protocol: str | None
    title: str
    severity: Severity
    confidence: Confidence | None = None
    score: float
    score_breakdown: dict[str, Any]
    status: FindingStatus
    evidence: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime
    last_scan_run_id: str | None
    accepted_until: datetime | None


class FindingUpdate(RequestModel):
    """A triage decision; every change is audited with who made it and why."""

    status: FindingStatus
    reason: str = Field(min_length=1, max_length=2000)
    until: datetime | None = Field(
        default=None, description="Required for risk-accepted: when the acceptance lapses."
    )


class FindingTransitionRead(ReadModel):
    id: str
    finding_id: str
    from_status: FindingStatus | None
    to_status: FindingStatus
    actor: str
    reason: str
    until: datetime | None
    at: datetime
