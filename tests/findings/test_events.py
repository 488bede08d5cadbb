"""Every status change of a finding is an event (kind, the one payload, who and why, placement),
written in the same transaction as its audit row: by rescans, by people, by a lapsed acceptance."""

from sqlmodel import Session, col, select

from cybermission.events import Event, EventKind
from cybermission.findings.events import FindingPlace, unplaced
from cybermission.findings.models import Finding, FindingStatus, FindingTransition
from cybermission.findings.payloads import finding_payload
from cybermission.findings.service import (
    SYSTEM_ACTOR,
    expire_acceptances,
    record_findings,
    transition_finding,
)
from cybermission.inventory.models import Device
from cybermission.sites.models import Organization, Site
from tests.findings.test_lifecycle import DAY, T0, draft, rescan, run


def events(session: Session) -> list[Event]:
    return list(session.exec(select(Event).order_by(col(Event.id))).all())


def created(session: Session, device: Device) -> Finding:
    [finding] = record_findings(
        session,
        scan_run_id=run(session),
        drafts=[draft(device)],
        now=T0,
        place_of=unplaced,
    ).created
    session.commit()
    return finding


def test_finding_events_created_carries_the_one_payload(session: Session, device: Device) -> None:
    finding = created(session, device)
    [event] = events(session)
    assert event.kind is EventKind.FINDING_CREATED
    assert event.subject_id == finding.id
    assert event.severity == "high"
    assert event.payload == {
        **finding_payload(finding),
        "from_status": None,
        "actor": SYSTEM_ACTOR,
        "reason": "condition seen",
        "until": None,
    }
    assert event.payload["status"] == "open"


def test_finding_events_every_decision_of_a_person(session: Session, device: Device) -> None:
    finding = created(session, device)
    steps = [
        (FindingStatus.ACKNOWLEDGED, EventKind.FINDING_ACKNOWLEDGED),
        (FindingStatus.RISK_ACCEPTED, EventKind.FINDING_RISK_ACCEPTED),
        (FindingStatus.OPEN, EventKind.FINDING_REOPENED),
        (FindingStatus.FALSE_POSITIVE, EventKind.FINDING_FALSE_POSITIVE),
        (FindingStatus.OPEN, EventKind.FINDING_REOPENED),
        (FindingStatus.RESOLVED, EventKind.FINDING_RESOLVED),
    ]
    for to, _kind in steps:
        transition_finding(
            session,
            finding_id=finding.id,
            to=to,
            actor="ana",
            reason=f"why {to}",
            until=T0 + DAY if to is FindingStatus.RISK_ACCEPTED else None,
            now=T0,
            place_of=unplaced,
        )
        session.commit()
    changes = events(session)[1:]
    assert [e.kind for e in changes] == [kind for _to, kind in steps]
    assert [e.payload["status"] for e in changes] == [str(to) for to, _kind in steps]
    assert [e.payload["from_status"] for e in changes] == [
        "open",
        "acknowledged",
        "risk-accepted",
        "open",
        "false-positive",
        "open",
    ]
    assert {e.payload["actor"] for e in changes} == {"ana"}
    assert changes[1].payload["until"] == (T0 + DAY).isoformat()
    # One event per audit row: the trail and the log tell the same story.
    transitions = session.exec(select(FindingTransition)).all()
    assert len(transitions) == len(events(session))


def test_finding_events_lapsed_acceptance_reopens_with_an_event(
    session: Session, device: Device
) -> None:
    finding = created(session, device)
    transition_finding(
        session,
        finding_id=finding.id,
        to=FindingStatus.RISK_ACCEPTED,
        actor="ana",
        reason="compensating control",
        until=T0 + DAY,
        now=T0,
        place_of=unplaced,
    )
    session.commit()
    assert expire_acceptances(session, now=T0 + DAY, place_of=unplaced) == [finding]
    session.commit()
    last = events(session)[-1]
    assert last.kind is EventKind.FINDING_REOPENED
    assert last.payload["from_status"] == "risk-accepted"
    assert last.payload["actor"] == SYSTEM_ACTOR
    assert last.payload["reason"].startswith("risk acceptance expired at")


def test_finding_events_rescan_resolves_and_reopens(session: Session, device: Device) -> None:
    created(session, device)
    rescan(session, device, [], T0 + DAY)
    rescan(session, device, [draft(device)], T0 + 2 * DAY)
    kinds = [e.kind for e in events(session)]
    assert kinds == [
        EventKind.FINDING_CREATED,
        EventKind.FINDING_RESOLVED,
        EventKind.FINDING_REOPENED,
    ]
    assert [e.scan_run_id is not None for e in events(session)] == [True, True, True]


def test_finding_events_name_the_devices_organisation_and_site(
    session: Session, device: Device
) -> None:
    org = Organization(slug="water", name="Water")
    session.add(org)
    session.flush()
    site = Site(organization_id=org.id, slug="north", name="North plant")
    session.add(site)
    session.commit()
    placed = FindingPlace(organization_id=org.id, site_id=site.id)
    asked: list[str] = []

    def place_of(device_id: str) -> FindingPlace:
        asked.append(device_id)
        return placed

    record_findings(
        session,
        scan_run_id=run(session),
        drafts=[draft(device)],
        now=T0,
        place_of=place_of,
    )
    session.commit()
    [event] = events(session)
    assert (event.organization_id, event.site_id) == (org.id, site.id)
    assert asked == [device.id]
