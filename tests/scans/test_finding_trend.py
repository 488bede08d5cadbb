"""The trend of a site's open findings, replayed from the audit trail the lifecycle writes (on
SQLite and PostgreSQL): creation counts, triage that closes leaves, acknowledgement stays,
resolution leaves, recurrence returns; other sites and other organisations stay out."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.findings.events import unplaced
from cybermission.findings.models import FindingStatus, Severity
from cybermission.findings.service import FindingDraft, record_findings, transition_finding
from cybermission.inventory.models import Device
from cybermission.scans.finding_trend import open_findings_trend, severity_trend
from cybermission.sites.models import Organization, Site

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _placed(session: Session, org: str, site: str) -> Device:
    device = Device(name="plc", organization_id=org, site_id=site)
    session.add(device)
    session.flush()
    return device


def _draft(device: Device, rule: str, severity: Severity) -> FindingDraft:
    return FindingDraft(
        rule_id=rule,
        device_id=device.id,
        service_id=None,
        port=502,
        protocol="modbus",
        title=rule,
        severity=severity,
        evidence={},
        score=5.0,
        score_breakdown={},
    )


def _record(session: Session, device: Device, rule: str, severity: Severity, at: datetime) -> str:
    result = record_findings(
        session,
        scan_run_id=None,
        drafts=[_draft(device, rule, severity)],
        now=at,
        place_of=unplaced,
    )
    return (result.created or result.updated)[0].id


def _move(session: Session, finding_id: str, to: FindingStatus, at: datetime) -> None:
    transition_finding(
        session,
        finding_id=finding_id,
        to=to,
        actor="analyst",
        reason="checked",
        now=at,
        place_of=unplaced,
    )


def test_trend_follows_the_lifecycle_of_one_sites_findings(session: Session) -> None:
    org, other = Organization(slug="w", name="W"), Organization(slug="s", name="S")
    session.add_all([org, other])
    session.flush()
    north, south = (
        Site(organization_id=org.id, slug="n", name="N"),
        Site(organization_id=org.id, slug="s", name="S"),
    )
    far = Site(organization_id=other.id, slug="f", name="F")
    session.add_all([north, south, far])
    session.flush()
    plc = _placed(session, org.id, north.id)
    crit = _record(session, plc, "a", Severity.CRITICAL, T0)  # open from T0
    high = _record(session, plc, "b", Severity.HIGH, T0 + HOUR)
    _move(session, high, FindingStatus.ACKNOWLEDGED, T0 + 2 * HOUR)  # still open
    _move(session, crit, FindingStatus.FALSE_POSITIVE, T0 + 3 * HOUR)  # leaves
    _move(session, high, FindingStatus.RESOLVED, T0 + 4 * HOUR)  # leaves
    _record(session, plc, "b", Severity.HIGH, T0 + 5 * HOUR)  # recurs: back
    _record(session, _placed(session, org.id, south.id), "c", Severity.LOW, T0)
    _record(session, _placed(session, other.id, far.id), "d", Severity.LOW, T0)
    session.commit()

    points = open_findings_trend(
        session=session, site_id=north.id, visible_to=org.id, now=T0 + 5 * HOUR, points=6
    )
    assert [p.at for p in points] == [T0 + i * HOUR for i in range(6)]
    assert [(p.counts[Severity.CRITICAL], p.counts[Severity.HIGH]) for p in points] == [
        (1, 0),
        (1, 1),
        (1, 1),
        (0, 1),
        (0, 0),
        (0, 1),
    ]
    assert all(p.counts[Severity.LOW] == 0 for p in points)  # the south site's finding
    # Another organisation's caller sees nothing of this site.
    assert (
        open_findings_trend(
            session=session, site_id=north.id, visible_to=other.id, now=T0 + 5 * HOUR
        )
        == []
    )
    # A window starting later begins from the counts reached by then.
    late = open_findings_trend(
        session=session,
        site_id=north.id,
        visible_to=None,
        now=T0 + 5 * HOUR,
        since=T0 + 3 * HOUR,
        points=3,
    )
    assert [p.total for p in late] == [1, 0, 1]


def test_severity_trend_of_no_change_holds_zero() -> None:
    points = severity_trend([], [T0, T0 + HOUR])
    assert [p.total for p in points] == [0, 0]
