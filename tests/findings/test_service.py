"""Recording findings on SQLite and PostgreSQL: dedup, reopen, decisions kept, resolve, pages."""

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from cybermission.errors import ValidationError
from cybermission.findings.events import unplaced
from cybermission.findings.models import Finding, FindingStatus, Severity
from cybermission.findings.scoring import score_finding
from cybermission.findings.service import (
    FindingDraft,
    list_findings,
    record_findings,
    resolve_absent,
)
from cybermission.inventory.models import Device, Service
from cybermission.probes import JSONValue
from cybermission.scans.models import ScanRun

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def make_device(session: Session, name: str = "plc") -> Device:
    device = Device(name=name)
    session.add(device)
    session.commit()
    return device


def make_run(session: Session) -> str:
    run = ScanRun()
    session.add(run)
    session.commit()
    return run.id


def draft(
    device: Device,
    rule_id: str = "modbus-unauthenticated-reachable",
    *,
    service_id: str | None = None,
    protocol: str = "modbus",
    severity: Severity = Severity.HIGH,
    evidence: dict[str, JSONValue] | None = None,
) -> FindingDraft:
    score, breakdown = score_finding(severity=severity)
    return FindingDraft(
        rule_id=rule_id,
        device_id=device.id,
        service_id=service_id,
        port=502,
        protocol=protocol,
        title="Modbus/TCP reachable without authentication",
        severity=severity,
        evidence=dict(evidence or {"facts": {"vendor": "Schneider Electric"}}),
        score=score,
        score_breakdown=breakdown,
    )


def count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Finding)).one()


def test_service_records_new_findings(session: Session) -> None:
    device = make_device(session)
    run = make_run(session)
    result = record_findings(
        session,
        scan_run_id=run,
        drafts=[draft(device)],
        now=T0,
        place_of=unplaced,
    )
    session.commit()
    assert [f.rule_id for f in result.created] == ["modbus-unauthenticated-reachable"]
    assert result.updated == []
    stored = session.exec(select(Finding)).one()
    assert stored.dedup_key == f"modbus-unauthenticated-reachable|{device.id}|-"
    assert stored.status == FindingStatus.OPEN
    assert stored.first_seen_at == stored.last_seen_at == T0
    assert stored.score_breakdown["decision"] == "attend"


def test_service_repeated_recording_updates_without_duplicate(session: Session) -> None:
    device = make_device(session)
    first, second = make_run(session), make_run(session)
    record_findings(
        session,
        scan_run_id=first,
        drafts=[draft(device)],
        now=T0,
        place_of=unplaced,
    )
    session.commit()
    later = T0 + timedelta(days=1)
    newer = draft(device, severity=Severity.CRITICAL, evidence={"facts": {"vendor": "Other"}})
    result = record_findings(
        session,
        scan_run_id=second,
        drafts=[newer],
        now=later,
        place_of=unplaced,
    )
    session.commit()
    assert result.created == []
    assert len(result.updated) == 1
    assert count(session) == 1
    session.expire_all()
    stored = session.exec(select(Finding)).one()
    assert stored.first_seen_at == T0
    assert stored.last_seen_at == later
    assert stored.last_scan_run_id == second
    assert stored.severity == Severity.CRITICAL
    assert stored.evidence == {"facts": {"vendor": "Other"}}
    assert stored.score == newer.score


def test_service_same_key_twice_in_one_batch_is_one_finding(session: Session) -> None:
    device = make_device(session)
    run = make_run(session)
    result = record_findings(
        session,
        scan_run_id=run,
        drafts=[draft(device)] * 3,
        now=T0,
        place_of=unplaced,
    )
    session.commit()
    assert len(result.created) == 1
    assert count(session) == 1


def _finding_selects(session: Session) -> tuple[list[str], Callable[[], None]]:
    """The SELECTs of the finding table sent from now on, and how to stop listening."""
    sent: list[str] = []

    def record(*args: object) -> None:
        statement = str(args[2])
        if statement.lstrip().upper().startswith("SELECT") and "FROM finding" in statement:
            sent.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    return sent, lambda: event.remove(engine, "before_cursor_execute", record)


def test_service_does_not_look_up_findings_of_devices_new_in_the_transaction(
    session: Session,
) -> None:
    """A scan batch's new devices can have no stored finding (issue 12): their drafts are
    created without a SELECT; a known device's draft is still looked up and updated."""
    known, new = make_device(session, "known"), make_device(session, "new")
    run = make_run(session)
    record_findings(session, scan_run_id=run, drafts=[draft(known)], now=T0, place_of=unplaced)
    session.commit()
    sent, stop = _finding_selects(session)
    try:
        only_new = record_findings(
            session,
            scan_run_id=run,
            drafts=[draft(new), draft(new, "other-rule")],
            now=T0,
            place_of=unplaced,
            new_devices={new.id},
        )
        assert sent == []
        both = record_findings(
            session,
            scan_run_id=run,
            drafts=[draft(known), draft(new, "third-rule")],
            now=T0 + timedelta(hours=1),
            place_of=unplaced,
            new_devices={new.id},
        )
        assert len(sent) == 1
    finally:
        stop()
    session.commit()
    assert [f.device_id for f in only_new.created] == [new.id, new.id]
    assert [f.device_id for f in both.created] == [new.id]
    assert [f.device_id for f in both.updated] == [known.id]
    assert count(session) == 4


def test_service_new_device_whose_finding_is_stored_fails_rather_than_duplicates(
    session: Session,
) -> None:
    """A caller wrong about a device being new: the unique dedup key refuses the second row."""
    device = make_device(session)
    run = make_run(session)
    record_findings(session, scan_run_id=run, drafts=[draft(device)], now=T0, place_of=unplaced)
    session.commit()
    with pytest.raises(IntegrityError):
        record_findings(
            session,
            scan_run_id=run,
            drafts=[draft(device)],
            now=T0,
            place_of=unplaced,
            new_devices={device.id},
        )
    session.rollback()
    assert count(session) == 1


def test_service_created_findings_left_out_of_the_session_are_stored(session: Session) -> None:
    """keep_created=False (a scan batch only counts them): stored, counted, not attached."""
    device = make_device(session)
    result = record_findings(
        session,
        scan_run_id=make_run(session),
        drafts=[draft(device), draft(device, "other-rule")],
        now=T0,
        place_of=unplaced,
        keep_created=False,
    )
    assert len(result.created) == 2
    assert not any(finding in session for finding in result.created)
    session.commit()
    stored = {f.rule_id: f for f in session.exec(select(Finding))}
    assert sorted(stored) == sorted(f.rule_id for f in result.created)
    for finding in result.created:
        assert stored[finding.rule_id].id == finding.id


def test_service_service_id_separates_findings(session: Session) -> None:
    device = make_device(session)
    run = make_run(session)
    services = [
        Service(device_id=device.id, address="127.0.0.9", port=p, transport="tcp", protocol="x")
        for p in (502, 503)
    ]
    session.add_all(services)
    session.commit()
    drafts = [draft(device, service_id=s.id) for s in services] + [draft(device)]
    result = record_findings(session, scan_run_id=run, drafts=drafts, now=T0, place_of=unplaced)
    session.commit()
    assert len(result.created) == 3
    assert count(session) == 3


def test_service_resolved_finding_reopens_on_recurrence(session: Session) -> None:
    device = make_device(session)
    run = make_run(session)
    (finding,) = record_findings(
        session,
        scan_run_id=run,
        drafts=[draft(device)],
        now=T0,
        place_of=unplaced,
    ).created
    finding.status = FindingStatus.RESOLVED
    session.commit()
    result = record_findings(
        session,
        scan_run_id=make_run(session),
        drafts=[draft(device)],
        now=T0 + timedelta(1),
        place_of=unplaced,
    )
    session.commit()
    assert [f.id for f in result.reopened] == [finding.id]
    assert [f.id for f in result.updated] == [finding.id]
    session.expire_all()
    assert session.get(Finding, finding.id).status == FindingStatus.OPEN  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "decided",
    [FindingStatus.RISK_ACCEPTED, FindingStatus.FALSE_POSITIVE, FindingStatus.ACKNOWLEDGED],
)
def test_service_human_decision_is_kept(session: Session, decided: FindingStatus) -> None:
    device = make_device(session)
    (finding,) = record_findings(
        session,
        scan_run_id=make_run(session),
        drafts=[draft(device)],
        now=T0,
        place_of=unplaced,
    ).created
    finding.status = decided
    session.commit()
    later = T0 + timedelta(hours=6)
    result = record_findings(
        session,
        scan_run_id=make_run(session),
        drafts=[draft(device)],
        now=later,
        place_of=unplaced,
    )
    session.commit()
    assert result.reopened == []
    session.expire_all()
    stored = session.get(Finding, finding.id)
    assert stored is not None
    assert stored.status == decided
    assert stored.last_seen_at == later


def test_service_resolve_absent_resolves_only_what_the_rescan_did_not_see(
    session: Session,
) -> None:
    device, other = make_device(session, "a"), make_device(session, "b")
    first = make_run(session)
    drafts = [
        draft(device, "modbus-unauthenticated-reachable"),
        draft(device, "modbus-device-identity-disclosure"),
        draft(device, "telnet-cleartext-management", protocol="telnet"),
        draft(device, "snmp-default-community", protocol="snmp"),
        draft(other, "modbus-unauthenticated-reachable"),
    ]
    created = record_findings(
        session, scan_run_id=first, drafts=drafts, now=T0, place_of=unplaced
    ).created
    by_rule = {(f.device_id, f.rule_id): f for f in created}
    by_rule[(device.id, "snmp-default-community")].status = FindingStatus.RISK_ACCEPTED
    session.commit()

    # The rescan of `device` ran the modbus and snmp probes and saw only the unauthenticated port.
    second = make_run(session)
    later = T0 + timedelta(days=1)
    record_findings(
        session,
        scan_run_id=second,
        drafts=[drafts[0]],
        now=later,
        place_of=unplaced,
    )
    resolved = resolve_absent(
        session,
        scan_run_id=second,
        device_ids=[device.id],
        probes_run={"modbus", "snmp"},
        now=later,
        place_of=unplaced,
    )
    session.commit()

    assert [f.rule_id for f in resolved] == ["modbus-device-identity-disclosure"]
    session.expire_all()
    status = {(f.device_id, f.rule_id): f.status for f in session.exec(select(Finding)).all()}
    assert status == {
        (device.id, "modbus-unauthenticated-reachable"): FindingStatus.OPEN,
        (device.id, "modbus-device-identity-disclosure"): FindingStatus.RESOLVED,
        (device.id, "telnet-cleartext-management"): FindingStatus.OPEN,  # telnet not re-checked
        (device.id, "snmp-default-community"): FindingStatus.RISK_ACCEPTED,
        (other.id, "modbus-unauthenticated-reachable"): FindingStatus.OPEN,  # not rescanned
    }


def test_service_list_findings_pages_in_first_seen_order(session: Session) -> None:
    device = make_device(session)
    run = make_run(session)
    for index in range(7):
        # pairs share a first_seen_at, so the id breaks the tie across page boundaries
        at = T0 + timedelta(minutes=index // 2)
        record_findings(
            session,
            scan_run_id=run,
            drafts=[draft(device, f"rule-{index}")],
            now=at,
            place_of=unplaced,
        )
    session.commit()
    seen: list[Finding] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = list_findings(session, limit=3, cursor=cursor)
        seen.extend(page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert len({f.id for f in seen}) == 7
    keys = [(f.first_seen_at, f.id) for f in seen]
    assert keys == sorted(keys)


def test_service_list_findings_filters(session: Session) -> None:
    device = make_device(session)
    run = make_run(session)
    drafts = [
        draft(device, "a-rule", severity=Severity.LOW),
        draft(device, "b-rule", severity=Severity.HIGH),
        draft(device, "c-rule", severity=Severity.HIGH),
    ]
    created = record_findings(
        session, scan_run_id=run, drafts=drafts, now=T0, place_of=unplaced
    ).created
    created[2].status = FindingStatus.FALSE_POSITIVE
    session.commit()
    high = list_findings(session, severity=Severity.HIGH).items
    assert {f.rule_id for f in high} == {"b-rule", "c-rule"}
    assert [f.rule_id for f in list_findings(session, rule_id="a-rule").items] == ["a-rule"]
    open_high = list_findings(session, severity=Severity.HIGH, status=FindingStatus.OPEN)
    assert [f.rule_id for f in open_high.items] == ["b-rule"]
    assert list_findings(session, device_id="nope").items == []


@pytest.mark.parametrize("cursor", ["not-a-cursor", "W10", "WyJ4IiwgMV0"])
def test_service_list_findings_rejects_bad_cursor(session: Session, cursor: str) -> None:
    with pytest.raises(ValidationError, match="cursor"):
        list_findings(session, cursor=cursor)


@pytest.mark.parametrize("limit", [0, 1001])
def test_service_list_findings_rejects_bad_limit(session: Session, limit: int) -> None:
    with pytest.raises(ValidationError, match="limit"):
        list_findings(session, limit=limit)


def test_service_logs_counts_and_reopen(session: Session, caplog: pytest.LogCaptureFixture) -> None:
    # extra keys that clash with LogRecord attributes ("created") raise only when INFO is on
    caplog.set_level(logging.INFO, logger="cybermission.findings.service")
    device = make_device(session)
    (finding,) = record_findings(
        session,
        scan_run_id=make_run(session),
        drafts=[draft(device)],
        now=T0,
        place_of=unplaced,
    ).created
    finding.status = FindingStatus.RESOLVED
    session.commit()
    record_findings(
        session,
        scan_run_id=make_run(session),
        drafts=[draft(device)],
        now=T0,
        place_of=unplaced,
    )
    resolve_absent(
        session,
        scan_run_id=make_run(session),
        device_ids=[device.id],
        probes_run=None,
        now=T0,
        place_of=unplaced,
    )
    recorded = [r for r in caplog.records if r.getMessage() == "findings recorded"]
    assert [(r.findings_created, r.findings_reopened) for r in recorded] == [(1, 0), (0, 1)]  # type: ignore[attr-defined]
    messages = [r.getMessage() for r in caplog.records]
    assert "finding reopened" in messages
    assert "finding resolved" in messages
