"""Absence on SQLite and PostgreSQL: devices and services missed by consecutive complete scans."""

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cybermission.inventory.absence import Absences, record_absences
from cybermission.inventory.batch import HostSeen, reconcile_hosts
from cybermission.inventory.catalog_cache import InventoryCache
from cybermission.inventory.identity import ServiceSeen
from cybermission.inventory.models import ChangeEvent, ChangeKind, Device, Service
from cybermission.scans.targets import target_membership
from cybermission.sites.models import Organization

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SCANNED = [(502, "tcp"), (80, "tcp")]


def _modbus(serial: str) -> ServiceSeen:
    return ServiceSeen(
        port=502,
        transport="tcp",
        protocol="modbus",
        probe="modbus",
        facts={"vendor": "Acme", "model": "PLC-1", "serial": serial},
    )


def _web() -> ServiceSeen:
    return ServiceSeen(port=80, transport="tcp", protocol="http", probe="http", facts={})


def _run(
    session: Session,
    hosts: list[HostSeen],
    *,
    at: datetime,
    targets: list[str],
    organizations: Collection[str | None] = (None,),
    skipped: Collection[str] = (),
    after: int = 2,
) -> Absences:
    """One complete run at ``at``: its hosts written, then its finish step's absences."""
    reconcile_hosts(
        session,
        hosts,
        scanned=SCANNED,
        scan_run_id=None,
        now=at,
        cache=InventoryCache(),
        absent_after_scans=after,
    )
    inside = target_membership(targets)
    absences = record_absences(
        session,
        organizations=organizations,
        covered=lambda address, _org: inside(address) and address not in skipped,
        seen_since=at,
        scanned=SCANNED,
        absent_after_scans=after,
        scan_run_id=None,
        now=at + timedelta(minutes=5),
    )
    session.commit()
    return absences


def _kinds(session: Session, device_id: str) -> list[ChangeKind]:
    return [
        e.kind
        for e in session.exec(
            select(ChangeEvent)
            .where(ChangeEvent.device_id == device_id)
            .order_by(col(ChangeEvent.at))
        )
    ]


def test_a_device_missed_twice_is_unreachable_and_its_services_closed(engine: Engine) -> None:
    net = ["127.50.3.0/24"]
    plc = HostSeen("127.50.3.1", [_modbus("A1"), _web()])
    with Session(engine) as session:
        _run(session, [plc], at=T0, targets=net)
        once = _run(session, [], at=T0 + HOUR, targets=net)
        device = session.exec(select(Device)).one()
        assert [d.id for d in once.missed] == [device.id]
        assert not once.unreachable
        assert device.unreachable_since is None
        assert all(s.is_open for s in session.exec(select(Service)))
        twice = _run(session, [], at=T0 + 2 * HOUR, targets=net)
        assert [d.id for d in twice.unreachable] == [device.id]
        assert sorted(s.port for _, s in twice.closed) == [80, 502]
        assert not any(s.is_open for s in session.exec(select(Service)))
        assert device.unreachable_since is not None
        # Still absent: counted, but said once.
        _run(session, [], at=T0 + 3 * HOUR, targets=net)
        assert _kinds(session, device.id) == [
            ChangeKind.DEVICE_NEW,
            ChangeKind.DEVICE_GONE,
            ChangeKind.SERVICE_CLOSED,
            ChangeKind.SERVICE_CLOSED,
        ]


def test_a_device_answering_again_is_back_and_its_count_restarts(engine: Engine) -> None:
    net = ["127.50.3.0/24"]
    plc = HostSeen("127.50.3.2", [_modbus("A2")])
    with Session(engine) as session:
        _run(session, [plc], at=T0, targets=net, after=1)
        _run(session, [], at=T0 + HOUR, targets=net, after=1)
        _run(session, [plc], at=T0 + 2 * HOUR, targets=net, after=1)
        device = session.exec(select(Device)).one()
        assert (device.unreachable_since, device.absent_scans) == (None, 0)
        assert session.exec(select(Service)).one().is_open
        back = [ChangeKind.DEVICE_BACK, ChangeKind.SERVICE_OPENED]
        assert _kinds(session, device.id)[-2:] == back


def test_a_miss_between_answers_does_not_add_up(engine: Engine) -> None:
    net = ["127.50.3.0/24"]
    plc = HostSeen("127.50.3.3", [_modbus("A3")])
    with Session(engine) as session:
        for hour, hosts in enumerate([[plc], [], [plc], []]):
            absences = _run(session, hosts, at=T0 + hour * HOUR, targets=net)
            assert not absences.unreachable


def test_addresses_outside_the_run_or_skipped_count_nothing(engine: Engine) -> None:
    with Session(engine) as session:
        _run(
            session,
            [HostSeen("127.50.3.4", [_modbus("A4")]), HostSeen("127.50.4.4", [_modbus("B4")])],
            at=T0,
            targets=["127.50.3.0/23"],
        )
        for hour in (1, 2, 3):
            absences = _run(
                session,
                [],
                at=T0 + hour * HOUR,
                targets=["127.50.3.0/24", "127.50.9.0/24"],
                skipped={"127.50.3.4"},
            )
            assert absences.missed == []


def test_a_device_seen_at_another_address_is_not_absent(engine: Engine) -> None:
    with Session(engine) as session:
        _run(session, [HostSeen("127.50.3.5", [_modbus("A5")])], at=T0, targets=["127.50.3.5"])
        # It moved: the same serial answers at .6; the run covered both addresses.
        moved = [HostSeen("127.50.3.6", [_modbus("A5")])]
        for hour in (1, 2):
            absences = _run(session, moved, at=T0 + hour * HOUR, targets=["127.50.3.0/24"])
            assert absences.missed == []


def test_absence_stays_inside_the_organisation_the_run_covered(engine: Engine) -> None:
    with Session(engine) as session:
        transit = Organization(slug="transit", name="Transit operator")
        water = Organization(slug="water", name="Water utility")
        session.add_all([transit, water])
        session.commit()
        hosts = [
            HostSeen("10.0.0.7", [_modbus("T7")], transit.id),
            HostSeen("10.0.0.7", [_modbus("W7")], water.id),
        ]
        _run(session, hosts, at=T0, targets=["10.0.0.0/24"], organizations=[transit.id, water.id])
        # The water utility's scan finds nothing at 10.0.0.7: only its own device is absent.
        for hour in (1, 2):
            absences = _run(
                session, [], at=T0 + hour * HOUR, targets=["10.0.0.0/24"], organizations=[water.id]
            )
            assert {d.organization_id for d in absences.missed} == {water.id}
        by_org = {d.organization_id: d for d in session.exec(select(Device))}
        assert by_org[water.id].unreachable_since is not None
        assert by_org[transit.id].unreachable_since is None


def test_an_open_port_missed_on_an_answering_device_closes_after_the_threshold(
    engine: Engine,
) -> None:
    net = ["127.50.3.0/24"]
    with Session(engine) as session:
        _run(session, [HostSeen("127.50.3.8", [_modbus("A8"), _web()])], at=T0, targets=net)
        _run(session, [HostSeen("127.50.3.8", [_modbus("A8")])], at=T0 + HOUR, targets=net)
        web = session.exec(select(Service).where(Service.port == 80)).one()
        assert (web.is_open, web.absent_scans) == (True, 1)
        _run(session, [HostSeen("127.50.3.8", [_modbus("A8")])], at=T0 + 2 * HOUR, targets=net)
        session.refresh(web)
        assert web.is_open is False
