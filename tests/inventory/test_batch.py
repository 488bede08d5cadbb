"""Batched inventory reconciliation on SQLite and PostgreSQL: identity, services, history."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.inventory.batch import (
    HostSeen,
    ReconcileResult,
    reconcile_hosts,
)
from cybermission.inventory.catalog_cache import InventoryCache
from cybermission.inventory.identity import ServiceSeen, normalise_mac
from cybermission.inventory.models import (
    ChangeEvent,
    ChangeKind,
    Device,
    Interface,
    IPAddress,
    Service,
)
from cybermission.inventory.queries import list_devices
from cybermission.pagination import decode_cursor

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
IDENTITY = {
    "vendor": "Schneider Electric",
    "product_name": "M340",
    "product_code": "BMXP342020",
    "model": "BMX P34 2020",
    "revision": "v2.70",
    "serial": "SN-0042",
}


def _modbus(facts: Mapping[str, object], port: int = 502) -> ServiceSeen:
    return ServiceSeen(port=port, transport="tcp", protocol="modbus", probe="modbus", facts=facts)


def reconcile_host(
    session: Session,
    *,
    address: str,
    now: datetime,
    seen: Sequence[ServiceSeen] | None = None,
    scanned: Sequence[tuple[int, str]] = ((502, "tcp"),),
    scan_run_id: str | None = None,
    organization_id: str | None = None,
    absent_after_scans: int = 1,
) -> ReconcileResult:
    """One host as a batch of one (how a scan of one address writes it); by default the host
    answered Modbus on 502 with IDENTITY, and only 502/tcp was scanned."""
    services = [_modbus(IDENTITY)] if seen is None else seen
    (result,) = reconcile_hosts(
        session,
        [HostSeen(address=address, services=services, organization_id=organization_id)],
        scanned=scanned,
        scan_run_id=scan_run_id,
        now=now,
        cache=InventoryCache(),
        absent_after_scans=absent_after_scans,
    )
    return result


def _events(session: Session, device_id: str) -> list[ChangeEvent]:
    return list(session.exec(select(ChangeEvent).where(ChangeEvent.device_id == device_id)).all())


def test_reconcile_hosts_creates_device_with_identity(engine: Engine) -> None:
    with Session(engine) as session:
        result = reconcile_host(session, address="127.50.0.1", now=T0)
        session.commit()
        device = session.get(Device, result.device.id)
        assert device is not None
        assert (device.vendor, device.product, device.model, device.firmware, device.serial) == (
            "Schneider Electric",
            "M340",
            "BMX P34 2020",
            "v2.70",
            "SN-0042",
        )
        assert device.provenance["firmware"]["probe"] == "modbus"
        assert [e.kind for e in _events(session, device.id)] == [ChangeKind.DEVICE_NEW]


def test_reconcile_hosts_records_firmware_change(engine: Engine) -> None:
    with Session(engine) as session:
        first = reconcile_host(session, address="127.50.0.1", now=T0)
        upgraded = {**IDENTITY, "revision": "v3.20"}
        second = reconcile_host(
            session,
            address="127.50.0.1",
            seen=[_modbus(upgraded)],
            now=T0 + timedelta(days=1),
        )
        session.commit()
        assert second.device.id == first.device.id
        changed = [
            e for e in _events(session, first.device.id) if e.kind is ChangeKind.ATTRIBUTE_CHANGED
        ]
        assert [(e.field, e.old_value, e.new_value) for e in changed] == [
            ("firmware", "v2.70", "v3.20")
        ]


def test_reconcile_hosts_same_facts_make_no_event(engine: Engine) -> None:
    with Session(engine) as session:
        for day in range(3):
            result = reconcile_host(session, address="127.50.0.1", now=T0 + timedelta(days=day))
        session.commit()
        assert len(_events(session, result.device.id)) == 1
        assert len(session.exec(select(Device)).all()) == 1
        assert len(session.exec(select(Service)).all()) == 1


def test_reconcile_hosts_service_closed_then_reopened(engine: Engine) -> None:
    telnet = ServiceSeen(
        port=23, transport="tcp", protocol="tcp", probe="tcp-connect", facts={"identified": False}
    )
    with Session(engine) as session:
        dev = reconcile_host(
            session,
            address="127.50.0.2",
            seen=[_modbus(IDENTITY), telnet],
            scanned=[(23, "tcp"), (502, "tcp")],
            now=T0,
        ).device
        reconcile_host(
            session,
            address="127.50.0.2",
            scanned=[(23, "tcp"), (502, "tcp")],
            now=T0 + timedelta(hours=1),
        )
        closed = session.exec(select(Service).where(Service.port == 23)).one()
        assert closed.is_open is False
        reconcile_host(
            session,
            address="127.50.0.2",
            seen=[_modbus(IDENTITY), telnet],
            scanned=[(23, "tcp"), (502, "tcp")],
            now=T0 + timedelta(hours=2),
        )
        session.commit()
        kinds = [e.kind for e in _events(session, dev.id)]
        assert kinds.count(ChangeKind.SERVICE_CLOSED) == 1
        assert kinds.count(ChangeKind.SERVICE_OPENED) == 1


def test_reconcile_hosts_port_not_rescanned_stays_open(engine: Engine) -> None:
    telnet = ServiceSeen(
        port=23, transport="tcp", protocol="tcp", probe="tcp-connect", facts={"identified": False}
    )
    with Session(engine) as session:
        reconcile_host(session, address="127.50.0.3", seen=[telnet], scanned=[(23, "tcp")], now=T0)
        reconcile_host(session, address="127.50.0.3", seen=[], now=T0 + timedelta(hours=1))
        session.commit()
        assert session.exec(select(Service)).one().is_open is True


def test_reconcile_hosts_serial_follows_device_to_new_address(engine: Engine) -> None:
    with Session(engine) as session:
        first = reconcile_host(session, address="127.50.0.4", now=T0)
        moved = reconcile_host(session, address="127.50.0.5", now=T0 + timedelta(days=1))
        session.commit()
        assert moved.device.id == first.device.id
        addresses = {ip.address for ip in session.exec(select(IPAddress)).all()}
        assert addresses == {"127.50.0.4", "127.50.0.5"}


def test_reconcile_hosts_gateway_units_become_children(engine: Engine) -> None:
    units = [
        {"unit_id": 1, "vendor": "Acme", "product_name": "RTU-1", "revision": "1.0"},
        {"unit_id": 3, "vendor": "Acme", "product_name": "Meter-3", "revision": "2.1"},
        {"unit_id": "bogus"},
        "garbage",
    ]
    with Session(engine) as session:
        result = reconcile_host(
            session,
            address="127.50.0.6",
            seen=[_modbus({"vendor": "GW Corp", "units": units})],
            now=T0,
        )
        session.commit()
        children = session.exec(select(Device).where(Device.parent_id == result.device.id)).all()
        assert sorted((c.unit_id, c.product) for c in children) == [(1, "RTU-1"), (3, "Meter-3")]


def test_list_devices_pages_with_cursor(engine: Engine) -> None:
    with Session(engine) as session:
        for i in range(5):
            reconcile_host(session, address=f"127.50.1.{i}", seen=[], now=T0 + timedelta(minutes=i))
        session.commit()
        page1, cursor = list_devices(session=session, visible_to=None, limit=2)
        page2, cursor2 = list_devices(session=session, visible_to=None, limit=2, cursor=cursor)
        page3, cursor3 = list_devices(session=session, visible_to=None, limit=2, cursor=cursor2)
        ids = [d.id for d in page1 + page2 + page3]
        assert len(ids) == len(set(ids)) == 5
        assert cursor3 is None
        assert decode_cursor(cursor or "", sort="first_seen_at")[1] == page1[-1].id


def test_reconcile_hosts_same_mac_on_two_addresses_is_one_device(engine: Engine) -> None:
    knx = ServiceSeen(
        port=3671, transport="udp", protocol="knx", probe="knx", facts={"mac": "00-24-6D-01-02-03"}
    )
    web = ServiceSeen(
        port=80, transport="tcp", protocol="http", probe="http", facts={"mac": "00246d010203"}
    )
    with Session(engine) as session:
        first = reconcile_host(
            session, address="127.50.0.7", seen=[knx], scanned=[], scan_run_id=None, now=T0
        )
        second = reconcile_host(
            session, address="127.50.0.8", seen=[web], scanned=[], scan_run_id=None, now=T0
        )
        session.commit()
        assert second.device.id == first.device.id
        assert [i.mac for i in session.exec(select(Interface)).all()] == ["00:24:6d:01:02:03"]


def test_reconcile_hosts_keeps_conflicting_facts_with_their_source(engine: Engine) -> None:
    modbus = _modbus({"vendor": "Schneider Electric", "revision": "v2.70"})
    web = ServiceSeen(
        port=80, transport="tcp", protocol="http", probe="http", facts={"vendor": "Telemecanique"}
    )
    with Session(engine) as session:
        result = reconcile_host(
            session,
            address="127.50.0.9",
            seen=[modbus, web],
            scanned=[],
            now=T0,
        )
        session.commit()
        device = session.get(Device, result.device.id)
        assert device is not None
        assert device.vendor == "Schneider Electric"
        assert device.provenance["vendor"]["probe"] == "modbus"
        assert device.provenance["vendor"]["conflicts"] == [
            {"probe": "http", "value": "Telemecanique"}
        ]


def test_normalise_mac_refuses_junk() -> None:
    assert normalise_mac("0030.DE0A.1B2C") == "00:30:de:0a:1b:2c"
    assert normalise_mac("ff:ff:ff:ff:ff:ff") is None
    assert normalise_mac("not a mac") is None
    assert normalise_mac(42) is None


def test_reconcile_hosts_rescan_stores_when_each_row_was_seen(engine: Engine) -> None:
    """The address, MAC and services seen again get the rescan's time in the store (written
    with one UPDATE per table at the batch's end, issue 12), and keep when they were first seen."""
    web = ServiceSeen(
        port=80, transport="tcp", protocol="http", probe="http", facts={"mac": "00246d010203"}
    )
    seen, scanned = [_modbus(IDENTITY), web], [(502, "tcp"), (80, "tcp")]
    later = T0 + timedelta(days=1)
    for now in (T0, later):
        with Session(engine) as session:
            reconcile_host(session, address="127.50.0.9", seen=seen, scanned=scanned, now=now)
            session.commit()
    with Session(engine) as session:
        rows = [
            *session.exec(select(IPAddress)),
            *session.exec(select(Interface)),
            *session.exec(select(Service)),
            *session.exec(select(Device)),
        ]
        assert [type(r).__name__ for r in rows] == [
            "IPAddress",
            "Interface",
            "Service",
            "Service",
            "Device",
        ]
        assert {(r.first_seen_at, r.last_seen_at) for r in rows} == {(T0, later)}
