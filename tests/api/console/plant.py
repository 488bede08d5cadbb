"""A seeded store for the console pages: one organisation (water) with two sites and their zones,
a PLC with a disputed model, a history and an advisory; a few more devices of other protocols and
vendors; enough meters for a second page; findings of every severity; scans and a schedule; and a
second organisation (sewer) whose rows the first never sees."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.auth.models import Role
from cybermission.auth.service import create_token
from cybermission.findings.models import (
    Confidence,
    Finding,
    FindingStatus,
    FindingTransition,
    Severity,
)
from cybermission.inventory.models import (
    ChangeEvent,
    ChangeKind,
    Criticality,
    Device,
    IPAddress,
    Service,
)
from cybermission.scans.models import ScanRun, ScanStatus, Scope
from cybermission.scans.schedules import (
    RunOutcome,
    RunTrigger,
    Schedule,
    ScheduleAudit,
    ScheduleRun,
)
from cybermission.sites.exposure import ZoneExposure
from cybermission.sites.models import Organization, Site, Zone

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
METERS = 52  # with the other devices: more than one page of 50


@dataclass
class Plant:
    """The ids the tests look for."""

    org: str = ""
    north: str = ""
    south: str = ""
    control_zone: str = ""
    plc: str = ""
    wago: str = ""
    s7: str = ""
    other_device: str = ""
    scan: str = ""
    schedule: str = ""
    findings: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


def _device(session: Session, org: str, address: str, *, seen: datetime, **attrs: object) -> Device:
    device = Device(organization_id=org, first_seen_at=seen, last_seen_at=seen, **attrs)
    session.add(device)
    session.flush()
    session.add(IPAddress(organization_id=org, address=address, device_id=device.id))
    return device


def _finding(
    session: Session, device: Device, rule: str, severity: Severity, score: float, **extra: object
) -> Finding:
    session.flush()
    port = extra.get("port")
    service = session.exec(
        select(Service).where(Service.device_id == device.id, Service.port == port)
    ).first()
    finding = Finding(
        service_id=service.id if service is not None else None,
        dedup_key=f"{rule}|{device.id}|-",
        rule_id=rule,
        device_id=device.id,
        title=str(extra.pop("title", rule.replace("-", " "))),
        severity=severity,
        score=score,
        first_seen_at=T0,
        last_seen_at=T0 + timedelta(days=1),
        **extra,
    )
    session.add(finding)
    session.flush()
    # The audit trail the trend is replayed from: seen at first sighting, closed a day later.
    session.add(
        FindingTransition(
            finding_id=finding.id,
            to_status=FindingStatus.OPEN,
            actor="system",
            reason="seen",
            at=T0,
        )
    )
    if finding.status is not FindingStatus.OPEN:
        session.add(
            FindingTransition(
                finding_id=finding.id,
                from_status=FindingStatus.OPEN,
                to_status=finding.status,
                actor="system",
                reason="rescanned",
                at=T0 + timedelta(days=1),
            )
        )
    return finding


def build_plant(engine: Engine) -> Plant:
    plant = Plant()
    with Session(engine, expire_on_commit=False) as session:
        org = Organization(slug="water", name="Water")
        other = Organization(slug="sewer", name="Sewer")
        session.add_all([org, other])
        session.flush()
        plant.org = org.id
        north = Site(organization_id=org.id, slug="north", name="Water Works North")
        south = Site(organization_id=org.id, slug="south", name="Pumping South")
        far = Site(organization_id=other.id, slug="far", name="Sewer Plant")
        session.add_all([north, south, far])
        session.flush()
        plant.north, plant.south = north.id, south.id
        control = Zone(
            site_id=north.id, name="control", purdue_level=1, exposure=ZoneExposure.CONTROL
        )
        field_zone = Zone(
            site_id=north.id, name="field", purdue_level=0, exposure=ZoneExposure.ISOLATED
        )
        session.add_all([control, field_zone])
        session.flush()
        plant.control_zone = control.id

        plc = _device(
            session,
            org.id,
            "127.40.14.11",
            seen=T0,
            name="pump-station-3",
            vendor="Schneider Electric",
            product="Modicon M340",
            model="BMX P34 2020",
            firmware="v2.5",
            serial="21340587",
            site_id=north.id,
            zone_id=control.id,
            criticality=Criticality.HIGH,
            provenance={
                "vendor": {"probe": "modbus", "at": T0.isoformat()},
                "model": {
                    "probe": "modbus",
                    "at": T0.isoformat(),
                    "conflicts": [{"probe": "http", "value": "M340 web server"}],
                },
                "firmware": {"probe": "modbus", "at": T0.isoformat()},
            },
        )
        session.add(
            Service(
                device_id=plc.id,
                address="127.40.14.11",
                port=502,
                transport="tcp",
                protocol="modbus",
                facts={"vendor": "Schneider Electric", "revision": "v2.5", "unit_id": 255},
            )
        )
        session.add(
            Service(
                device_id=plc.id,
                address="127.40.14.11",
                port=80,
                transport="tcp",
                protocol="http",
                facts={"server": "M340 web server"},
            )
        )
        session.add_all(
            [
                ChangeEvent(
                    device_id=plc.id, kind=ChangeKind.DEVICE_NEW, new_value="127.40.14.11", at=T0
                ),
                ChangeEvent(
                    device_id=plc.id,
                    kind=ChangeKind.ATTRIBUTE_CHANGED,
                    field="firmware",
                    old_value="v2.4",
                    new_value="v2.5",
                    at=T0 + timedelta(days=3),
                ),
            ]
        )
        plant.plc = plc.id
        wago = _device(
            session,
            org.id,
            "127.40.14.13",
            seen=T0 + timedelta(minutes=1),
            vendor="WAGO",
            model="750-881",
            firmware="01.07.13",
            site_id=south.id,
            criticality=Criticality.MEDIUM,
        )
        session.add(
            Service(
                device_id=wago.id,
                address="127.40.14.13",
                port=502,
                transport="tcp",
                protocol="modbus",
            )
        )
        plant.wago = wago.id
        s7 = _device(
            session,
            org.id,
            "127.40.14.20",
            seen=T0 + timedelta(minutes=2),
            vendor="Siemens",
            model="6ES7 214-1AG40-0XB0",
            firmware="V4.2.3",
            site_id=north.id,
            zone_id=field_zone.id,
        )
        session.add(
            Service(
                device_id=s7.id, address="127.40.14.20", port=102, transport="tcp", protocol="s7"
            )
        )
        plant.s7 = s7.id
        for i in range(METERS):
            _device(
                session,
                org.id,
                f"127.40.15.{i + 1}",
                seen=T0 + timedelta(hours=1, minutes=i),
                vendor="ABB",
                model="M4M 30",
                firmware="1.4.2",
                site_id=south.id,
            )
        hidden = _device(
            session,
            other.id,
            "127.40.16.1",
            seen=T0,
            vendor="Schneider Electric",
            model="BMX P34 2020 (sewer)",
            site_id=far.id,
        )
        plant.other_device = hidden.id

        plant.findings = {
            "modbus": _finding(
                session,
                plc,
                "modbus-unauthenticated-reachable",
                Severity.CRITICAL,
                9.1,
                port=502,
                protocol="modbus",
                title="Modbus reachable without authentication",
            ).id,
            "advisory": _finding(
                session,
                plc,
                "advisory:ICSA-21-131-03",
                Severity.HIGH,
                7.9,
                protocol="advisory",
                confidence=Confidence.HIGH,
                title="ICSA-21-131-03: Schneider Electric Modicon M340 denial of service",
                evidence={
                    "advisory_id": "ICSA-21-131-03",
                    "cves": ["CVE-2021-22779", "CVE-2020-7537"],
                    "cvss_score": 9.8,
                    "kev": True,
                    "branch_path": ["Schneider Electric", "Modicon M340 CPU", "< V3.30"],
                    "confidence": "high",
                    "confidence_reason": "model and version in the affected range",
                    "address": "127.40.14.11",
                },
            ).id,
            "http": _finding(
                session,
                plc,
                "http-cleartext-admin",
                Severity.MEDIUM,
                5.0,
                port=80,
                protocol="http",
                title="Web administration over cleartext HTTP",
            ).id,
            "wago": _finding(
                session,
                wago,
                "modbus-unauthenticated-reachable",
                Severity.HIGH,
                7.0,
                port=502,
                protocol="modbus",
                title="Modbus reachable without authentication",
            ).id,
            "s7": _finding(
                session,
                s7,
                "s7-unauthenticated-reachable",
                Severity.LOW,
                2.5,
                port=102,
                protocol="s7",
                title="S7comm reachable",
            ).id,
            "resolved": _finding(
                session,
                s7,
                "s7-old",
                Severity.HIGH,
                6.0,
                port=102,
                protocol="s7",
                status=FindingStatus.RESOLVED,
                title="An old S7 finding",
            ).id,
            "hidden": _finding(
                session, hidden, "modbus-unauthenticated-reachable", Severity.CRITICAL, 9.5
            ).id,
        }
        scope = Scope(
            name="north-plc", cidrs=["127.40.14.0/24"], site_id=north.id, organization_id=org.id
        )
        session.add(scope)
        session.flush()
        run = ScanRun(
            status=ScanStatus.PARTIAL,
            targets=["127.40.14.0/24"],
            ports=[102, 502],
            requested_by="token:operator-water",
            organization_id=org.id,
            created_at=T0,
            started_at=T0,
            finished_at=T0 + timedelta(minutes=2),
            hosts_total=256,
            hosts_probed=3,
            open_ports=4,
            observations=4,
            findings=5,
            errors=[{"target": "127.40.14.20:102", "stage": "s7", "error": "timed out after 3 s"}],
            sent={"modbus": {"fc43/mei14/basic": 2}, "s7": {"cotp-cr": 1}},
        )
        session.add(run)
        session.flush()
        plant.scan = run.id
        schedule = Schedule(
            name="north-nightly",
            scope_id=scope.id,
            site_id=north.id,
            organization_id=org.id,
            targets=["127.40.14.0/24"],
            cron="0 2 * * *",
            windows=[{"days": [0, 1, 2, 3, 4], "start": "01:00:00", "end": "05:00:00"}],
            next_due_at=T0 + timedelta(days=1),
        )
        session.add(schedule)
        session.flush()
        plant.schedule = schedule.id
        session.add_all(
            [
                ScheduleRun(
                    schedule_id=schedule.id,
                    trigger=RunTrigger.SCHEDULE,
                    due_at=T0,
                    decided_at=T0,
                    outcome=RunOutcome.STARTED,
                    scan_run_id=run.id,
                ),
                ScheduleRun(
                    schedule_id=schedule.id,
                    trigger=RunTrigger.SCHEDULE,
                    due_at=T0 + timedelta(days=5),
                    decided_at=T0 + timedelta(days=5),
                    outcome=RunOutcome.SKIPPED_BLACKOUT,
                    reason="blackout: pump overhaul",
                ),
                ScheduleAudit(
                    schedule_id=schedule.id,
                    action="created",
                    actor="token:operator-water",
                    at=T0 - timedelta(days=1),
                    changes={"cron": [None, "0 2 * * *"]},
                ),
            ]
        )
        for role in (Role.ANALYST, Role.VIEWER, Role.OPERATOR):
            issued = create_token(session, name=f"{role}-water", role=role, organization_id=org.id)
            plant.tokens[str(role)] = issued.secret
        session.commit()
    return plant
