"""The pipeline end to end against real pymodbus servers on 127.50.1.x: targets to findings."""

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import PacingProfile, PacingSettings, Settings, load_settings
from cybermission.db import create_db_engine
from cybermission.errors import ScopeError
from cybermission.events import EventKind, events_after
from cybermission.findings.models import Finding
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.inventory.models import Device, IPAddress, Service
from cybermission.probes import Transport, load_probes
from cybermission.scans.models import ObservationRecord, ScanRun, ScanStatus, ScopeBase
from cybermission.scans.probing import select_probes
from cybermission.scans.report import build_scan_report
from cybermission.scans.scopes import create_scope, guard_from_scopes
from cybermission.scans.service import create_scan_run
from cybermission.sites.allocations import create_allocation
from cybermission.sites.models import Organization, Site, Zone, ZoneExposure
from scanners.lab.modbus_devices import LabDevice, modbus_lab_devices
from scanners.lab.runner import listening
from tests.conftest import _postgres_engine
from tests.scans.stored_runs import scan_now
from tests.timing import scaled

BASE = "127.50.1.0"
NET = "127.50.1.0/26"
GUARD = ScopeGuard([ScopeRule.build("pipeline-tests", ["127.50.0.0/16"])])


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, LabDevice]]:
    devices = modbus_lab_devices(BASE, misfits=True)
    async with listening(devices):
        yield {d.name: d for d in devices}


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    # Generous timeouts: a loaded CI machine must not turn a slow answer into a failed probe.
    pacing = PacingSettings(
        profile=PacingProfile.LAB, connect_timeout_s=scaled(1.0), probe_timeout_s=scaled(1.5)
    )
    return load_settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        pacing=pacing,
        rules_dirs=[Path("rules")],
        **overrides,
    )


async def _scan(
    engine: Engine,
    settings: Settings,
    targets: list[str],
    guard: ScopeGuard = GUARD,
    run_guard: ScopeGuard | None = None,
) -> ScanRun:
    """The settings' UDP ports too: the pipeline's whole plan."""
    return await scan_now(
        engine, settings, targets, guard=guard, udp_ports=None, run_guard=run_guard
    )


@dataclass(frozen=True)
class NetScan:
    """One scan of the whole lab network (misfits included) and what it left."""

    engine: Engine
    lab: dict[str, LabDevice]
    run: ScanRun


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def net_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """An empty store with every table for :func:`net_scan`, on SQLite and PostgreSQL (as the
    ``engine`` fixture, once per module)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("net-scan") / "store.db"
        shutil.copyfile(request.getfixturevalue("sqlite_tables_template"), path)
        engine = create_db_engine(f"sqlite:///{path}")
        yield engine
        engine.dispose()
        return
    yield from _postgres_engine(template=request.getfixturevalue("postgres_tables_template"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net_scan(net_store: Engine, tmp_path_factory: pytest.TempPathFactory) -> NetScan:
    """The scan of NET the three tests below judge, run once per store: each ran the same scan
    on a fresh lab and store, and a scan of NET lasts as long as the silent device's timeout
    (4 x the scaled probe timeout until 8 answers were measured: 24 s each, idle machine). The
    lab stops once the scan ended: its counters stay, and the per-test ``lab`` of the other
    tests can take the addresses again."""
    devices = modbus_lab_devices(BASE, misfits=True)
    async with listening(devices):
        run = await _scan(net_store, _settings(tmp_path_factory.mktemp("net-scan")), [NET])
    return NetScan(engine=net_store, lab={d.name: d for d in devices}, run=run)


def test_execute_scan_identifies_every_lab_device(net_scan: NetScan) -> None:
    engine, lab, run = net_scan.engine, net_scan.lab, net_scan.run
    with Session(engine) as session:
        devices = {
            ip.address: session.get(Device, ip.device_id)
            for ip in session.exec(select(IPAddress)).all()
        }
    for name in ("modbus-plc-m340", "modbus-meter-pm710", "modbus-rtu-wago"):
        expected = lab[name].identity
        device = devices[lab[name].address]
        assert device is not None
        assert device.vendor == expected["vendor"]
        assert device.firmware == expected["revision"]
        assert device.model == expected["model"]
    assert run.hosts_probed == len(lab)


def test_execute_scan_sends_only_declared_requests_one_connection_at_a_time(
    net_scan: NetScan,
) -> None:
    lab, run = net_scan.lab, net_scan.run
    received = 0
    unanswered = {
        e["target"].split(":")[0] for e in run.errors if "ProbeTimeoutError" in str(e["error"])
    }
    for device in lab.values():
        assert {r.function_code for r in device.requests} <= {43, 17}, device.name
        assert all(r.mei_type == 14 for r in device.requests if r.function_code == 43)
        # One connection from the sweep (reset at once), one from the probe, one more for a
        # device that left it unanswered (asked again at the end of the run): never together.
        assert device.connections <= 2 + (device.address in unanswered), device.name
        received += len(device.requests)
    assert sum(sum(v.values()) for v in run.sent.values()) >= received > 0


def test_execute_scan_misbehaving_devices_make_a_partial_run(net_scan: NetScan) -> None:
    lab, run = net_scan.lab, net_scan.run
    assert run.status is ScanStatus.PARTIAL
    failed = {e["target"].split(":")[0] for e in run.errors if e["stage"] == "modbus"}
    assert lab["modbus-silent"].address in failed
    assert lab["modbus-garbage"].address in failed
    assert lab["modbus-plc-m340"].address not in failed


async def test_execute_scan_rescan_keeps_findings_without_duplicates(
    engine: Engine, lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    first = await _scan(engine, settings, [NET])
    with Session(engine) as session:
        before = {f.dedup_key: f.id for f in session.exec(select(Finding)).all()}
    second = await _scan(engine, settings, [NET])
    with Session(engine) as session:
        after = session.exec(select(Finding)).all()
        services = session.exec(select(Service)).all()
    assert before, "the first scan found nothing to judge"
    assert {f.dedup_key: f.id for f in after} == before
    assert all(f.last_scan_run_id == second.id for f in after)
    assert first.findings == len(before)
    assert second.findings == 0  # nothing new on the rescan
    assert len(services) == len(lab)


async def test_execute_scan_gateway_units_only_when_opted_in(
    engine: Engine, lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    gateway = lab["modbus-gateway"]
    await _scan(engine, _settings(tmp_path), [gateway.address])
    with Session(engine) as session:
        units = session.exec(select(Device).where(Device.unit_id != None)).all()  # noqa: E711
    # Without the walk, only unit 1 (the default probe's fallback behind a gateway) is known.
    assert [(u.unit_id, u.vendor) for u in units] == [(1, "Eaton")]
    settings = _settings(tmp_path, enabled_optional_probes=["modbus-units"])
    await _scan(engine, settings, [gateway.address])
    with Session(engine) as session:
        units = session.exec(select(Device).where(Device.unit_id != None)).all()  # noqa: E711
        parents = {u.parent_id for u in units}
        (gateway_device,) = [session.get(Device, p) for p in parents]
    assert sorted((u.unit_id, u.vendor) for u in units) == [(1, "Eaton"), (3, "Danfoss")]
    assert gateway_device is not None
    assert gateway_device.vendor is None  # the gateway never takes a unit's identity
    assert {r.unit_id for r in gateway.requests} >= {0xFF, *range(1, 248)}  # the whole range


async def test_execute_scan_refuses_at_send_time_when_scope_shrank(
    engine: Engine, lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    m340 = lab["modbus-plc-m340"]
    shrunk = ScopeGuard(
        [ScopeRule.build("shrunk", ["127.50.0.0/16"], excludes=[f"{m340.address}/32"])]
    )
    run = await _scan(engine, _settings(tmp_path), [m340.address], run_guard=shrunk)
    assert m340.connections == 0
    assert m340.bytes_received == 0
    assert any("excluded" in e["error"] for e in run.errors)


def test_create_scan_run_out_of_scope_stores_nothing(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, pytest.raises(ScopeError, match=r"127\.51\.0\.1"):
        create_scan_run(
            session,
            guard=GUARD,
            targets=["127.50.1.11", "127.51.0.1"],
            ports=[502],
            settings=_settings(tmp_path),
            requested_by="test",
        )
    with Session(engine) as session:
        assert session.exec(select(ScanRun)).all() == []


async def test_build_scan_report_follows_the_json_contract(
    engine: Engine, lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    run = await _scan(engine, _settings(tmp_path), [lab["modbus-plc-m340"].address])
    with Session(engine) as session:
        report = build_scan_report(session, run.id)
    assert set(report) == {"scan", "assets", "findings"}
    assert {
        "id",
        "status",
        "targets",
        "started_at",
        "finished_at",
        "hosts_probed",
        "errors",
    } <= set(report["scan"])
    (asset,) = report["assets"]
    assert {
        "id",
        "addresses",
        "vendor",
        "product",
        "model",
        "firmware",
        "serial",
        "device_type",
        "services",
    } <= set(asset)
    assert asset["addresses"] == [lab["modbus-plc-m340"].address]
    assert asset["services"][0]["protocol"] == "modbus"
    assert report["findings"]
    assert {"id", "rule_id", "severity", "score", "asset_id", "port", "title"} <= set(
        report["findings"][0]
    )


async def test_execute_scan_places_devices_in_the_scope_zone_and_scores_by_exposure(
    engine: Engine, lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    m340 = lab["modbus-plc-m340"]
    with Session(engine, expire_on_commit=False) as session:
        org = Organization(slug="water", name="Water board")
        site = Site(organization_id=org.id, slug="pump-3", name="Pump station 3")
        zone = Zone(site_id=site.id, name="plant-dmz", exposure=ZoneExposure.INTERNET)
        session.add_all([org, site, zone])
        session.flush()
        create_allocation(session, organization_id=org.id, cidr=f"{m340.address}/32")
        scope = create_scope(
            session,
            data=ScopeBase(
                name="pump-3", cidrs=[f"{m340.address}/32"], site_id=site.id, zone_id=zone.id
            ),
        )
        session.commit()
        guard = guard_from_scopes([scope], _settings(tmp_path))
    await _scan(engine, _settings(tmp_path), [m340.address], guard=guard)
    with Session(engine) as session:
        ip = session.exec(select(IPAddress).where(IPAddress.address == m340.address)).one()
        device = session.get(Device, ip.device_id)
        assert device is not None
        finding = session.exec(
            select(Finding).where(Finding.rule_id == "modbus-unauthenticated-reachable")
        ).one()
    assert (device.site_id, device.zone_id, device.organization_id) == (site.id, zone.id, org.id)
    exposure = {f["name"]: f for f in finding.score_breakdown["factors"]}["exposure"]
    assert exposure["value"] > 1.0
    assert "internet" in exposure["reason"]


async def test_execute_scan_logs_only_what_is_new_as_events(
    engine: Engine, lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    target = [lab["modbus-plc-m340"].address]
    first = await _scan(engine, settings, target)
    with Session(engine) as session:
        after_first = events_after(session, after_id=0)
    kinds = [e.kind for e in after_first]
    unauthenticated = next(
        e for e in after_first if e.payload.get("rule_id") == "modbus-unauthenticated-reachable"
    )
    assert unauthenticated.payload["attack_techniques"] == ["T0855", "T0836"]
    assert kinds.count(EventKind.ASSET_CREATED) == 1
    # Where the asset answered, for a SIEM's destination (CEF dst).
    created = next(e for e in after_first if e.kind is EventKind.ASSET_CREATED)
    assert created.payload["address"] == target[0]
    assert kinds.count(EventKind.FINDING_CREATED) == first.findings > 0
    assert kinds[-1] is EventKind.SCAN_FINISHED
    await _scan(engine, settings, target)
    with Session(engine) as session:
        later = events_after(session, after_id=after_first[-1].id or 0)
    assert [e.kind for e in later] == [EventKind.SCAN_FINISHED]


def test_select_probes_runs_fallbacks_after_the_main_probe_of_a_port(tmp_path: Path) -> None:
    plan = select_probes(
        load_probes(), _settings(tmp_path, enabled_optional_probes=["modbus-units"])
    )
    assert [p.name for p in plan.tcp[102]][:2] == ["s7", "mms"]
    assert [p.name for p in plan.tcp[502]] == ["modbus", "modbus-units"]


def _run_with_default_ports(engine: Engine, settings: Settings) -> ScanRun:
    """A run created without ports: the settings' ports, else the probes' ones."""
    with Session(engine) as session:
        return create_scan_run(
            session,
            guard=GUARD,
            targets=["127.50.1.11"],
            ports=None,
            settings=settings,
            requested_by="test",
        )


def test_create_scan_run_without_ports_sweeps_every_port_the_probes_declare(
    engine: Engine, tmp_path: Path
) -> None:
    run = _run_with_default_ports(engine, _settings(tmp_path))
    for probe in load_probes().values():
        swept = run.ports if probe.transport is Transport.TCP else run.udp_ports
        assert set(probe.default_ports) <= set(swept), probe.name
    declared = {(port, p.transport) for p in load_probes().values() for port in p.default_ports}
    assert {(port, Transport.TCP) for port in run.ports} <= declared
    assert {(port, Transport.UDP) for port in run.udp_ports} <= declared


def test_create_scan_run_configured_ports_replace_the_probes_ports(
    engine: Engine, tmp_path: Path
) -> None:
    run = _run_with_default_ports(engine, _settings(tmp_path, ports=[3389, 502], udp_ports=[]))
    assert (run.ports, run.udp_ports) == ([502, 3389], [])


def test_probe_plan_names_a_port_after_its_first_probe(tmp_path: Path) -> None:
    plan = select_probes(load_probes(), _settings(tmp_path))
    assert plan.port_name(102) == "s7comm"  # s7 before the mms fallback
    assert plan.port_name(4911) == "fox"
    assert plan.port_name(3389) is None  # no probe declares it


async def test_execute_scan_keeps_the_port_name_of_an_open_port_no_probe_identified(
    engine: Engine, lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    closing = lab["modbus-closing"].address
    run = await _scan(engine, _settings(tmp_path), [closing])
    with Session(engine) as session:
        (record,) = session.exec(
            select(ObservationRecord).where(ObservationRecord.scan_run_id == run.id)
        ).all()
    assert (record.protocol, record.port) == ("tcp", 502)
    assert record.facts == {"identified": False, "port_name": "modbus"}
