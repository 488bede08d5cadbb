"""Identity resolution stays inside one organisation, and attributes follow authority (issue 11,
issue 12's wrong-identity traps at the asset level), on SQLite and PostgreSQL."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session, select

from cybermission.inventory.batch import HostSeen, reconcile_hosts
from cybermission.inventory.catalog_cache import InventoryCache
from cybermission.inventory.identity import ServiceSeen, host_identity
from cybermission.inventory.models import (
    ChangeEvent,
    ChangeKind,
    Device,
    DeviceType,
    Interface,
    IPAddress,
    Manufacturer,
)
from cybermission.probes import IdentityAuthority
from cybermission.sites.models import Organization

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DEVICE = IdentityAuthority.DEVICE.rank
MANAGEMENT = IdentityAuthority.MANAGEMENT.rank
BANNER = IdentityAuthority.BANNER.rank
M340 = {
    "vendor": "Schneider Electric",
    "model": "BMX P34 2020",
    "revision": "v2.70",
    "serial": "SN-0042",
}


def _service(
    probe: str, facts: Mapping[str, object], *, port: int = 502, authority: int = DEVICE
) -> ServiceSeen:
    return ServiceSeen(
        port=port, transport="tcp", protocol=probe, probe=probe, facts=facts, authority=authority
    )


def _orgs(session: Session) -> tuple[str, str]:
    transit = Organization(slug="transit", name="Transit operator")
    water = Organization(slug="water", name="Water utility")
    session.add_all([transit, water])
    session.commit()
    return transit.id, water.id


def _scan(
    session: Session,
    hosts: Sequence[HostSeen],
    *,
    now: datetime = T0,
    cache: InventoryCache | None = None,
) -> list[Device]:
    results = reconcile_hosts(
        session,
        hosts,
        scanned=[(502, "tcp"), (161, "udp"), (80, "tcp"), (21, "tcp")],
        scan_run_id=None,
        now=now,
        cache=cache or InventoryCache(),
    )
    session.commit()
    return [r.device for r in results]


def test_same_address_in_two_organisations_is_two_devices(engine: Engine) -> None:
    with Session(engine) as session:
        transit, water = _orgs(session)
        a = _scan(session, [HostSeen("10.0.0.5", [_service("modbus", M340)], transit)])
        other = {**M340, "serial": "SN-7", "vendor": "WAGO", "model": "750-881"}
        b = _scan(session, [HostSeen("10.0.0.5", [_service("modbus", other)], water)])
        # A rescan of each organisation finds its own device again, never the other's.
        again = _scan(
            session,
            [
                HostSeen("10.0.0.5", [_service("modbus", M340)], transit),
                HostSeen("10.0.0.5", [_service("modbus", other)], water),
            ],
            now=T0 + timedelta(days=1),
        )
        assert a[0].id != b[0].id
        assert [d.id for d in again] == [a[0].id, b[0].id]
        rows = session.exec(select(IPAddress).order_by(IPAddress.organization_id)).all()
        assert sorted((ip.organization_id, ip.device_id) for ip in rows) == sorted(
            [(transit, a[0].id), (water, b[0].id)]
        )
        # No history crossed: each device has only its own creation event.
        kinds = [e.kind for e in session.exec(select(ChangeEvent)).all()]
        assert kinds == [ChangeKind.DEVICE_NEW, ChangeKind.DEVICE_NEW]


def test_same_serial_in_two_organisations_is_two_devices(engine: Engine) -> None:
    with Session(engine) as session:
        transit, water = _orgs(session)
        devices = _scan(
            session,
            [
                HostSeen("10.1.0.1", [_service("modbus", M340)], transit),
                HostSeen("10.2.0.1", [_service("modbus", M340)], water),
            ],
        )
        assert devices[0].id != devices[1].id
        assert {d.organization_id for d in devices} == {transit, water}
        # The same serial at a new address of one organisation follows that organisation's device.
        moved = _scan(
            session,
            [HostSeen("10.2.0.9", [_service("modbus", M340)], water)],
            now=T0 + timedelta(days=1),
        )
        assert moved[0].id == devices[1].id
        transit_ips = session.exec(
            select(IPAddress.address).where(IPAddress.organization_id == transit)
        ).all()
        assert transit_ips == ["10.1.0.1"]


def test_same_mac_in_two_organisations_is_two_devices(engine: Engine) -> None:
    knx = {"mac": "00:24:6d:01:02:03"}
    with Session(engine) as session:
        transit, water = _orgs(session)
        devices = _scan(
            session,
            [
                HostSeen("10.1.0.2", [_service("knx", knx, port=3671)], transit),
                HostSeen("10.2.0.2", [_service("knx", knx, port=3671)], water),
            ],
        )
        assert devices[0].id != devices[1].id
        interfaces = session.exec(select(Interface)).all()
        assert sorted(i.organization_id or "" for i in interfaces) == sorted([transit, water])


def test_unplaced_hosts_never_match_an_organisations_device(engine: Engine) -> None:
    with Session(engine) as session:
        transit, _ = _orgs(session)
        placed = _scan(session, [HostSeen("10.0.0.5", [_service("modbus", M340)], transit)])
        unplaced = _scan(session, [HostSeen("10.0.0.5", [_service("modbus", M340)])])
        assert placed[0].id != unplaced[0].id
        assert unplaced[0].organization_id is None


def test_hosts_of_one_batch_sharing_a_serial_are_one_device(engine: Engine) -> None:
    with Session(engine) as session:
        devices = _scan(
            session,
            [
                HostSeen("127.50.2.1", [_service("modbus", M340)]),
                HostSeen("127.50.2.2", [_service("modbus", M340)]),
            ],
        )
        assert devices[0].id == devices[1].id
        assert len(session.exec(select(Device)).all()) == 1


def test_identity_follows_authority_whatever_the_order_of_services(engine: Engine) -> None:
    snmp = _service(
        "snmp", {"vendor": "Schneider", "firmware": "2.7"}, port=161, authority=MANAGEMENT
    )
    web = _service("http", {"vendor": "Telemecanique", "model": "M340"}, port=80, authority=BANNER)
    modbus = _service("modbus", M340)
    with Session(engine) as session:
        devices = _scan(
            session,
            [
                HostSeen("127.50.2.3", [web, snmp, modbus]),
                HostSeen("127.50.2.4", [modbus, snmp, web]),
            ],
        )
    for device in devices:
        assert (device.vendor, device.model, device.firmware) == (
            "Schneider Electric",
            "BMX P34 2020",
            "v2.70",
        )
        assert device.provenance["vendor"]["probe"] == "modbus"
        conflicts = {c["probe"] for c in device.provenance["vendor"]["conflicts"]}
        assert conflicts == {"snmp", "http"}


def test_a_weaker_source_fills_only_what_the_stronger_does_not_say() -> None:
    chosen = host_identity(
        [
            _service("ftp", {"vendor": "Acme HMI", "firmware": "1.2"}, authority=BANNER),
            _service("modbus", {"vendor": "Acme"}),
        ]
    )
    assert chosen.attributes == {"vendor": "Acme", "firmware": "1.2"}
    assert chosen.sources == {"vendor": "modbus", "firmware": "ftp"}


def test_a_product_code_is_never_the_model(engine: Engine) -> None:
    enip = _service(
        "enip",
        {"vendor": "Rockwell Automation/Allen-Bradley", "product_code": "166"},
        port=44818,
    )
    with Session(engine) as session:
        (device,) = _scan(session, [HostSeen("127.50.2.5", [enip])])
        assert device.model is None
        assert device.name == "Rockwell Automation/Allen-Bradley"


def test_every_device_has_a_readable_name_that_follows_its_identity(engine: Engine) -> None:
    """No blank names: a device nothing identifies yet is named by its address, and takes its
    vendor and product once a probe says them, the vendor said once."""
    silent = _service("ftp", {}, port=21)
    with Session(engine) as session:
        (unknown,) = _scan(session, [HostSeen("127.50.2.6", [silent])])
        assert unknown.name == "127.50.2.6"
        red_lion = _service(
            "crimson", {"vendor": "Red Lion Controls", "product": "Red Lion Controls G306a"}
        )
        (named,) = _scan(
            session, [HostSeen("127.50.2.6", [silent, red_lion])], now=T0 + timedelta(hours=1)
        )
        assert named.id == unknown.id
        assert named.name == "Red Lion Controls G306a"
        long = _service("modbus", {"vendor": "V" * 150, "product": "P" * 150})
        (bounded,) = _scan(session, [HostSeen("127.50.2.7", [long])])
        assert bounded.name == ("V" * 150 + " " + "P" * 150)[:200]


def test_a_name_people_gave_one_device_names_the_asset_not_its_product(engine: Engine) -> None:
    """An OPC UA ApplicationName or a KNX friendly name is an installation's name: it names the
    asset when nothing says its product, and never becomes the product."""
    opcua = _service(
        "opcua", {"instance_name": "SIMATIC.S7-1500.OPC-UA.Application:PLC_7"}, port=4840
    )
    knx = _service("knx", {"vendor": "MDT technologies", "instance_name": "Lobby"}, port=3671)
    with Session(engine) as session:
        plc, router = _scan(
            session, [HostSeen("127.50.2.8", [opcua]), HostSeen("127.50.2.9", [knx])]
        )
        assert (plc.name, plc.product) == ("SIMATIC.S7-1500.OPC-UA.Application:PLC_7", None)
        assert (router.name, router.vendor, router.product) == (
            "MDT technologies Lobby",
            "MDT technologies",
            None,
        )


@pytest.mark.parametrize("own_models", [False, True], ids=["one model", "a model per host"])
def test_a_batch_reads_the_store_in_a_constant_number_of_queries(
    engine: Engine, own_models: bool
) -> None:
    """The point of batching: the statements of a batch do not grow with its hosts, also when
    every host is a model the store has not seen (new device types and manufacturers)."""

    def hosts(count: int, base: int) -> list[HostSeen]:
        return [
            HostSeen(
                f"127.50.{base}.{i}",
                [
                    _service(
                        "modbus",
                        {
                            **M340,
                            "serial": f"SN-{base}-{i}",
                            "model": f"M-{base}-{i}" if own_models else M340["model"],
                            "vendor": f"V-{base}-{i % 3}" if own_models else M340["vendor"],
                        },
                    )
                ],
            )
            for i in range(count)
        ]

    def statements(batch: list[HostSeen], cache: InventoryCache) -> tuple[int, int]:
        seen: list[str] = []

        def count(*args: object) -> None:
            seen.append(str(args[2]).lstrip().upper())

        event.listen(engine, "before_cursor_execute", count)
        try:
            with Session(engine) as session:
                _scan(session, batch, cache=cache)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        selects = sum(1 for s in seen if s.startswith("SELECT"))
        inserts = sum(1 for s in seen if s.startswith(("INSERT", "COPY")))  # COPY: PostgreSQL
        return selects, inserts

    cache = InventoryCache()
    statements(hosts(1, 3), cache)  # the manufacturer and device type enter the cache
    small_first, large_first = statements(hosts(4, 4), cache), statements(hosts(60, 5), cache)
    small_again, large_again = statements(hosts(4, 4), cache), statements(hosts(60, 5), cache)
    assert small_first == large_first
    assert small_again == large_again
    with Session(engine) as session:
        types = session.exec(select(DeviceType)).all()
    assert len(types) == (1 + 4 + 60 if own_models else 1)


def test_the_cache_forgets_rows_of_a_rolled_back_batch(engine: Engine) -> None:
    cache = InventoryCache()
    with Session(engine) as session:
        reconcile_hosts(
            session,
            [HostSeen("127.50.2.6", [_service("modbus", M340)])],
            scanned=[(502, "tcp")],
            scan_run_id=None,
            now=T0,
            cache=cache,
        )
        session.rollback()
    with Session(engine) as session:
        hosts = [HostSeen("127.50.2.6", [_service("modbus", M340)])]
        (device,) = _scan(session, hosts, cache=cache)
        assert session.get(DeviceType, device.device_type_id) is not None
        assert len(session.exec(select(Manufacturer)).all()) == 1


def test_the_cache_forgets_rows_of_a_batch_whose_end_it_never_heard(engine: Engine) -> None:
    """A session that ends with neither a commit nor a rollback event (its connection died
    during COMMIT, so the rollback failed too): its new types are not trusted by the next."""
    cache = InventoryCache()
    with Session(engine) as session:
        reconcile_hosts(
            session,
            [HostSeen("127.50.2.7", [_service("modbus", M340)])],
            scanned=[(502, "tcp")],
            scan_run_id=None,
            now=T0,
            cache=cache,
        )
    # Closed without commit: nothing of it was stored, and no after_rollback fired.
    with Session(engine) as session:
        (device,) = _scan(
            session, [HostSeen("127.50.2.7", [_service("modbus", M340)])], cache=cache
        )
        assert session.get(DeviceType, device.device_type_id) is not None
        assert len(session.exec(select(Manufacturer)).all()) == 1


@pytest.mark.parametrize("scans", [1, 2])
def test_rescans_of_the_same_answers_change_nothing(engine: Engine, scans: int) -> None:
    hosts = [
        HostSeen(
            "127.50.2.7",
            [
                _service("modbus", M340),
                _service("snmp", {"vendor": "Schneider"}, port=161, authority=MANAGEMENT),
            ],
        )
    ]
    with Session(engine) as session:
        first = _scan(session, hosts)
        for day in range(scans):
            again = _scan(session, hosts, now=T0 + timedelta(days=day + 1))
            assert again[0].id == first[0].id
        kinds = [e.kind for e in session.exec(select(ChangeEvent)).all()]
        assert kinds == [ChangeKind.DEVICE_NEW]


def test_a_serial_and_a_mac_naming_two_devices_never_merge_them(engine: Engine) -> None:
    web = {"mac": "00:80:f4:0a:0b:0c"}
    with Session(engine) as session:
        first, other = _scan(
            session,
            [
                HostSeen("127.50.2.8", [_service("modbus", M340)]),
                HostSeen(
                    "127.50.2.9",
                    [
                        _service("modbus", {**M340, "serial": "SN-9"}),
                        _service("http", web, port=80, authority=BANNER),
                    ],
                ),
            ],
        )
        # The first device's serial now comes with the other device's MAC.
        (again,) = _scan(
            session,
            [
                HostSeen(
                    "127.50.2.8",
                    [_service("modbus", M340), _service("http", web, port=80, authority=BANNER)],
                )
            ],
            now=T0 + timedelta(days=1),
        )
        assert again.id == first.id != other.id
        interface = session.exec(select(Interface)).one()
        assert interface.device_id == other.id
        conflicts = session.exec(
            select(ChangeEvent).where(ChangeEvent.kind == ChangeKind.IDENTITY_CONFLICT)
        ).all()
        assert [(c.device_id, c.old_value, c.new_value) for c in conflicts] == [
            (first.id, other.id, "00:80:f4:0a:0b:0c")
        ]
