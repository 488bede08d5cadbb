"""The whole ``cybermission lab`` scanned twice: the same assets, nothing flips, no false history.

Issue 12: two PLCs once merged into one asset whose model and firmware flipped at every scan and
raised a false ``firmware-downgraded`` finding. Every lab device (every protocol, the identity
traps included) is scanned twice by the real pipeline; the second run must find exactly the
first run's assets with the same identities, record no attribute change, and open no finding.

On SQLite here, on PostgreSQL in test_lab_rescan_postgres.py: two files, so that two workers
(``--dist loadfile``) share the suite's two longest lab runs. The lab is ``whole_lab``
(tests/scans/conftest.py), on 127.50.60.0.
"""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import PacingProfile, PacingSettings, Settings, load_settings
from cybermission.findings.models import Finding
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.inventory.models import ChangeEvent, Device, IPAddress
from cybermission.probes import Transport, resolve_ports
from cybermission.scans.models import ScanRun
from cybermission.scans.pipeline import execute_scan
from cybermission.scans.service import create_scan_run
from tests.timing import scaled

# Read-only opt-in probes the lab answers (bench/lab.py uses the same).
OPT_IN_READS = ["modbus-units", "dnp3-attributes", "iec104-interrogation"]
UDP_PROTOCOLS = {"bacnet", "snmp", "knx", "coap", "enip-udp", "fins-udp", "melsec-udp", "hart-udp"}
IDENTITY = ("vendor", "product", "model", "firmware", "serial", "parent_id", "unit_id")


def _settings(tmp_path: Path) -> Settings:
    pacing = PacingSettings(
        profile=PacingProfile.LAB, connect_timeout_s=scaled(2.0), probe_timeout_s=scaled(3.0)
    )
    return load_settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        pacing=pacing,
        rules_dirs=[Path("rules")],
        enabled_optional_probes=OPT_IN_READS,
    )


async def _scan(
    engine: Engine, settings: Settings, devices: list[dict[str, Any]], guard: ScopeGuard
) -> ScanRun:
    tcp = sorted(
        {d["port"] for d in devices if d["protocol"] not in UDP_PROTOCOLS}
        | set(resolve_ports(None, Transport.TCP))
    )
    udp = sorted(
        {d["port"] for d in devices if d["protocol"] in UDP_PROTOCOLS}
        | set(resolve_ports(None, Transport.UDP))
    )
    with Session(engine) as session:
        run = create_scan_run(
            session,
            guard=guard,
            targets=sorted({d["address"] for d in devices}),
            ports=tcp,
            udp_ports=udp,
            settings=settings,
            requested_by="test",
        )
        session.commit()
        run_id = run.id
    return await execute_scan(engine=engine, settings=settings, scan_run_id=run_id, guard=guard)


def _assets(engine: Engine) -> dict[str, tuple[object, ...]]:
    with Session(engine) as session:
        return {
            d.id: tuple(getattr(d, attr) for attr in IDENTITY)
            for d in session.exec(select(Device)).all()
        }


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
async def test_the_whole_lab_scanned_twice_gives_the_same_assets(
    engine: Engine, whole_lab: list[dict[str, Any]], tmp_path: Path
) -> None:
    await scanned_twice_gives_the_same_assets(engine, whole_lab, tmp_path)


async def scanned_twice_gives_the_same_assets(
    engine: Engine, lab: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    addresses = sorted({d["address"] for d in lab})
    guard = ScopeGuard([ScopeRule.build("lab-rescan", [f"{a}/32" for a in addresses])])
    first = await _scan(engine, settings, lab, guard)
    before = _assets(engine)
    with Session(engine) as session:
        findings_before = {f.id for f in session.exec(select(Finding)).all()}
        addresses_before = {ip.address for ip in session.exec(select(IPAddress)).all()}
    second = await _scan(engine, settings, lab, guard)
    after = _assets(engine)
    with Session(engine) as session:
        changes = session.exec(
            select(ChangeEvent).where(ChangeEvent.scan_run_id == second.id)
        ).all()
        history = session.exec(select(Finding).where(Finding.protocol == "history")).all()
        findings_after = {f.id for f in session.exec(select(Finding)).all()}
        addresses_after = {ip.address for ip in session.exec(select(IPAddress)).all()}
    # Nearly every lab address answers with the default settings (one SNMP agent answers only
    # a community that must be configured); whatever answered, answered both times.
    assert len(addresses_before) >= 0.9 * len(addresses)
    assert addresses_after == addresses_before
    assert after == before, "an asset appeared, vanished or changed identity on the rescan"
    assert [(c.kind, c.field, c.old_value, c.new_value) for c in changes] == []
    assert history == []
    assert findings_after == findings_before
    assert second.findings == 0
    assert first.hosts_probed == second.hosts_probed
