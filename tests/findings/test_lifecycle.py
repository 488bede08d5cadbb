"""The findings lifecycle on SQLite and PostgreSQL: rescans that keep, resolve and reopen; people's
decisions with their audit trail; risk acceptances that lapse."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.findings.events import unplaced
from cybermission.findings.models import Finding, FindingStatus, Severity
from cybermission.findings.scoring import score_finding
from cybermission.findings.service import (
    SYSTEM_ACTOR,
    FindingDraft,
    expire_acceptances,
    list_transitions,
    record_findings,
    resolve_absent,
    transition_finding,
)
from cybermission.inventory.models import Device
from cybermission.scans.models import ScanRun

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def run(session: Session) -> str:
    scan = ScanRun()
    session.add(scan)
    session.commit()
    return scan.id


def draft(device: Device, rule_id: str = "modbus-unauthenticated-reachable") -> FindingDraft:
    score, breakdown = score_finding(severity=Severity.HIGH)
    return FindingDraft(
        rule_id=rule_id,
        device_id=device.id,
        service_id=None,
        port=502,
        protocol="modbus",
        title="Modbus/TCP reachable without authentication",
        severity=Severity.HIGH,
        evidence={},
        score=score,
        score_breakdown=breakdown,
    )


def rescan(
    session: Session,
    device: Device,
    drafts: list[FindingDraft],
    now: datetime,
    *,
    probes: set[str] | None = None,
    ports: list[int] | None = None,
) -> list[Finding]:
    """One scan run as the pipeline does it: expire, record, then resolve what is gone."""
    run_id = run(session)
    expire_acceptances(session, now=now, place_of=unplaced)
    record_findings(
        session,
        scan_run_id=run_id,
        drafts=drafts,
        now=now,
        place_of=unplaced,
    )
    resolved = resolve_absent(
        session,
        scan_run_id=run_id,
        device_ids=[device.id],
        probes_run={"modbus"} if probes is None else probes,
        ports_scanned=[502] if ports is None else ports,
        now=now,
        place_of=unplaced,
    )
    session.commit()
    return resolved


def only(session: Session) -> Finding:
    findings = list(session.exec(select(Finding)).all())
    assert len(findings) == 1
    return findings[0]


def test_lifecycle_rescan_that_still_sees_the_condition_keeps_it_open(
    session: Session, device: Device
) -> None:
    rescan(session, device, [draft(device)], T0)
    resolved = rescan(session, device, [draft(device)], T0 + DAY)
    finding = only(session)
    assert resolved == []
    assert finding.status is FindingStatus.OPEN
    assert finding.first_seen_at == T0
    assert finding.last_seen_at == T0 + DAY


def test_lifecycle_clean_rescan_resolves_and_audits(session: Session, device: Device) -> None:
    rescan(session, device, [draft(device)], T0)
    resolved = rescan(session, device, [], T0 + DAY)
    finding = only(session)
    assert [f.id for f in resolved] == [finding.id]
    assert finding.status is FindingStatus.RESOLVED
    trail = list_transitions(session, finding_id=finding.id)
    assert [(t.from_status, t.to_status, t.actor) for t in trail] == [
        (None, FindingStatus.OPEN, SYSTEM_ACTOR),
        (FindingStatus.OPEN, FindingStatus.RESOLVED, SYSTEM_ACTOR),
    ]
    assert trail[1].at == T0 + DAY
    assert "condition gone" in trail[1].reason


def test_lifecycle_rescan_by_other_probes_does_not_resolve(
    session: Session, device: Device
) -> None:
    rescan(session, device, [draft(device)], T0)
    rescan(session, device, [], T0 + DAY, probes={"s7"})
    assert only(session).status is FindingStatus.OPEN


def test_lifecycle_rescan_of_other_ports_does_not_resolve(session: Session, device: Device) -> None:
    rescan(session, device, [draft(device)], T0)
    rescan(session, device, [], T0 + DAY, ports=[102])
    assert only(session).status is FindingStatus.OPEN


def test_lifecycle_recurrence_reopens_a_resolved_finding(session: Session, device: Device) -> None:
    rescan(session, device, [draft(device)], T0)
    rescan(session, device, [], T0 + DAY)
    rescan(session, device, [draft(device)], T0 + 2 * DAY)
    finding = only(session)
    assert finding.status is FindingStatus.OPEN
    last = list_transitions(session, finding_id=finding.id)[-1]
    assert (last.from_status, last.to_status) == (FindingStatus.RESOLVED, FindingStatus.OPEN)


def test_lifecycle_acceptance_survives_rescans_then_expiry_reopens(
    session: Session, device: Device
) -> None:
    rescan(session, device, [draft(device)], T0)
    finding = only(session)
    transition_finding(
        session,
        finding_id=finding.id,
        to=FindingStatus.RISK_ACCEPTED,
        actor="alice",
        reason="compensating firewall rule FW-12 until the cell is replaced",
        until=T0 + 10 * DAY,
        now=T0 + DAY,
        place_of=unplaced,
    )
    session.commit()
    # Seen again and then absent: neither reopens nor resolves an accepted finding.
    rescan(session, device, [draft(device)], T0 + 2 * DAY)
    assert only(session).status is FindingStatus.RISK_ACCEPTED
    rescan(session, device, [], T0 + 3 * DAY)
    assert only(session).status is FindingStatus.RISK_ACCEPTED
    # The acceptance lapses: the next run reopens it, and still sees it.
    rescan(session, device, [draft(device)], T0 + 10 * DAY)
    finding = only(session)
    assert finding.status is FindingStatus.OPEN
    assert finding.accepted_until is None
    trail = list_transitions(session, finding_id=finding.id)
    assert [(t.to_status, t.actor) for t in trail][-2:] == [
        (FindingStatus.RISK_ACCEPTED, "alice"),
        (FindingStatus.OPEN, SYSTEM_ACTOR),
    ]
    assert trail[-2].until == T0 + 10 * DAY
    assert "expired" in trail[-1].reason


def test_lifecycle_expired_acceptance_then_clean_rescan_resolves(
    session: Session, device: Device
) -> None:
    rescan(session, device, [draft(device)], T0)
    transition_finding(
        session,
        finding_id=only(session).id,
        to=FindingStatus.RISK_ACCEPTED,
        actor="alice",
        reason="vendor patch pending",
        until=T0 + 2 * DAY,
        now=T0,
        place_of=unplaced,
    )
    session.commit()
    rescan(session, device, [], T0 + 5 * DAY)
    assert only(session).status is FindingStatus.RESOLVED


def test_lifecycle_expire_acceptances_leaves_running_acceptances(
    session: Session, device: Device
) -> None:
    rescan(session, device, [draft(device)], T0)
    transition_finding(
        session,
        finding_id=only(session).id,
        to=FindingStatus.RISK_ACCEPTED,
        actor="alice",
        reason="vendor patch pending",
        until=T0 + 2 * DAY,
        now=T0,
        place_of=unplaced,
    )
    assert expire_acceptances(session, now=T0 + DAY, place_of=unplaced) == []
    assert only(session).status is FindingStatus.RISK_ACCEPTED


@pytest.mark.parametrize("decided", [FindingStatus.FALSE_POSITIVE, FindingStatus.ACKNOWLEDGED])
def test_lifecycle_decision_kept_when_seen_again(
    session: Session, device: Device, decided: FindingStatus
) -> None:
    rescan(session, device, [draft(device)], T0)
    transition_finding(
        session,
        finding_id=only(session).id,
        to=decided,
        actor="bob",
        reason="checked on site",
        now=T0 + DAY,
        place_of=unplaced,
    )
    session.commit()
    rescan(session, device, [draft(device)], T0 + 2 * DAY)
    assert only(session).status is decided


def test_lifecycle_acknowledged_finding_resolves_when_gone(
    session: Session, device: Device
) -> None:
    rescan(session, device, [draft(device)], T0)
    transition_finding(
        session,
        finding_id=only(session).id,
        to=FindingStatus.ACKNOWLEDGED,
        actor="bob",
        reason="",
        now=T0,
        place_of=unplaced,
    )
    rescan(session, device, [], T0 + DAY)
    assert only(session).status is FindingStatus.RESOLVED


def test_lifecycle_false_positive_cannot_be_accepted_directly(
    session: Session, device: Device
) -> None:
    rescan(session, device, [draft(device)], T0)
    finding_id = only(session).id
    transition_finding(
        session,
        finding_id=finding_id,
        to=FindingStatus.FALSE_POSITIVE,
        actor="bob",
        reason="it is a honeypot",
        now=T0,
        place_of=unplaced,
    )
    with pytest.raises(ConflictError, match="false-positive finding cannot become risk-accepted"):
        transition_finding(
            session,
            finding_id=finding_id,
            to=FindingStatus.RISK_ACCEPTED,
            actor="bob",
            reason="x",
            until=T0 + DAY,
            now=T0,
            place_of=unplaced,
        )


@pytest.mark.parametrize(
    ("to", "reason", "until", "message"),
    [
        (FindingStatus.RISK_ACCEPTED, "ok", None, "until: a risk acceptance needs an expiry"),
        (FindingStatus.RISK_ACCEPTED, "ok", T0 - DAY, "until: expected a time after"),
        (FindingStatus.RISK_ACCEPTED, " ", T0 + DAY, "reason: expected why"),
        (FindingStatus.FALSE_POSITIVE, "", None, "reason: expected why"),
        (FindingStatus.ACKNOWLEDGED, "", T0 + DAY, "until: only a risk acceptance"),
    ],
)
def test_lifecycle_transition_validates_input(
    session: Session,
    device: Device,
    to: FindingStatus,
    reason: str,
    until: datetime | None,
    message: str,
) -> None:
    rescan(session, device, [draft(device)], T0)
    with pytest.raises(ValidationError, match=message):
        transition_finding(
            session,
            finding_id=only(session).id,
            to=to,
            actor="alice",
            reason=reason,
            until=until,
            now=T0,
            place_of=unplaced,
        )
    assert only(session).status is FindingStatus.OPEN


def test_lifecycle_transition_needs_an_actor(session: Session, device: Device) -> None:
    rescan(session, device, [draft(device)], T0)
    with pytest.raises(ValidationError, match="actor"):
        transition_finding(
            session,
            finding_id=only(session).id,
            to=FindingStatus.ACKNOWLEDGED,
            actor=" ",
            reason="",
            now=T0,
            place_of=unplaced,
        )


def test_lifecycle_transition_unknown_finding(session: Session) -> None:
    with pytest.raises(NotFoundError):
        transition_finding(
            session,
            finding_id="nope",
            to=FindingStatus.ACKNOWLEDGED,
            actor="a",
            reason="",
            now=T0,
            place_of=unplaced,
        )
