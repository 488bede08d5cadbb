"""The nmap discovery engine against real lab devices on 127.20.9.x (Debian's nmap)."""

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import PacingProfile, PacingSettings, load_settings
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.inventory.models import Device
from cybermission.scans.pipeline import execute_scan
from cybermission.scans.service import create_scan_run
from scanners.lab.modbus_devices import LabDevice, modbus_lab_devices
from scanners.nmap_engine import NmapEngine, nmap_arguments
from tests.timing import scaled

BASE = "127.20.9.0"
GUARD = ScopeGuard([ScopeRule.build("nmap-tests", ["127.20.9.0/24"])])
LAB_PACING = PacingSettings(
    profile=PacingProfile.LAB, connect_timeout_s=scaled(0.5), probe_timeout_s=scaled(1)
)

needs_nmap = pytest.mark.skipif(
    shutil.which("nmap") is None and os.environ.get("CYBERMISSION_TEST_REQUIRE_POSTGRES") != "1",
    reason="Debian's nmap is not installed here (.ci/run installs it)",
)


@pytest.fixture
async def lab() -> AsyncIterator[list[LabDevice]]:
    devices = modbus_lab_devices(BASE)[:3]
    for device in devices:
        await device.start()
    try:
        yield devices
    finally:
        for device in devices:
            await device.stop()


def test_nmap_arguments_never_resolve_names_and_follow_the_pacing() -> None:
    safe = nmap_arguments(PacingSettings(per_host_rate_per_s=2.0), ["modbus-discover"])
    assert safe.split()[:3] == ["-n", "-sT", "-Pn"]
    assert "--scan-delay 500ms" in safe
    assert "--script modbus-discover" in safe
    assert "--scan-delay" not in nmap_arguments(LAB_PACING, [])


@needs_nmap
async def test_nmap_engine_finds_open_ports_and_skips_refused_hosts(
    lab: list[LabDevice],
) -> None:
    kept, refused = lab[0], lab[1]
    guard = ScopeGuard(
        [ScopeRule.build("nmap-tests", ["127.20.9.0/24"], excludes=[f"{refused.address}/32"])]
    )
    result = await NmapEngine().discover(
        [kept.address, refused.address],
        [502, 503],
        guard=guard,
        pacing=LAB_PACING,
        script_ports=[],
    )
    by_host = {h.address: h for h in result.hosts}
    assert by_host[kept.address].open_ports == (502,)
    assert by_host[refused.address].scope_refused
    assert refused.connections == 0


@needs_nmap
async def test_execute_scan_with_the_nmap_engine_identifies_with_our_probes(
    engine: Engine, lab: list[LabDevice], tmp_path: Path
) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        pacing=LAB_PACING,
        discovery_engine="nmap",
        udp_ports=[],
    )
    with Session(engine) as session:
        run = create_scan_run(
            session,
            guard=GUARD,
            targets=[f"{BASE}/28"],
            ports=[502],
            settings=settings,
            requested_by="test",
        )
        session.commit()
        run_id = run.id
    await execute_scan(engine=engine, settings=settings, scan_run_id=run_id, guard=GUARD)
    with Session(engine) as session:
        vendors = sorted(d.vendor or "" for d in session.exec(select(Device)).all())
    assert vendors == sorted(str(d.identity["vendor"]) for d in lab)
