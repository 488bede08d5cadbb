"""A device going offline between scans (issue 10), through the real pipeline on pymodbus servers:
unreachable after ``absent_after_scans`` complete scans, its services closed, its findings
resolved, events for alerting; a run that could not look at it counts nothing."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import PacingProfile, PacingSettings, Settings, load_settings
from cybermission.events import Event, EventKind
from cybermission.findings.models import Finding, FindingStatus
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.inventory.models import ChangeEvent, ChangeKind, Device, IPAddress, Service
from cybermission.scans.models import ScanRun
from scanners.lab.modbus_devices import LabDevice, modbus_lab_devices
from scanners.lab.runner import listening
from tests.scans.stored_runs import scan_now
from tests.timing import scaled

BASE = "127.50.70.0"
NET = "127.50.70.0/26"
GUARD = ScopeGuard([ScopeRule.build("absence-tests", ["127.50.70.0/24"])])
LEAVING = "modbus-meter-pm710"


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, LabDevice]]:
    devices = modbus_lab_devices(BASE)
    async with listening(devices):
        yield {d.name: d for d in devices}


def _settings(tmp_path: Path) -> Settings:
    pacing = PacingSettings(
        profile=PacingProfile.LAB, connect_timeout_s=scaled(1.0), probe_timeout_s=scaled(1.5)
    )
    return load_settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        pacing=pacing,
        rules_dirs=[Path("rules")],
        absent_after_scans=2,
    )


async def _scan(engine: Engine, settings: Settings, targets: list[str]) -> ScanRun:
    return await scan_now(engine, settings, targets, guard=GUARD)


def _device_at(session: Session, address: str) -> Device:
    ip = session.exec(select(IPAddress).where(IPAddress.address == address)).one()
    device = session.get(Device, ip.device_id)
    assert device is not None
    return device


async def test_a_device_gone_offline_is_unreachable_after_two_complete_scans(
    engine: Engine, lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    await _scan(engine, settings, [NET])
    leaving = lab[LEAVING]
    with Session(engine) as session:
        device_id = _device_at(session, leaving.address).id
        open_findings = session.exec(
            select(Finding).where(Finding.device_id == device_id, Finding.status == "open")
        ).all()
    assert open_findings, "the leaving device had nothing to resolve"
    await leaving.stop()
    await _scan(engine, settings, [NET])
    with Session(engine) as session:
        device = session.get(Device, device_id)
        assert device is not None
        assert (device.absent_scans, device.unreachable_since) == (1, None)
        assert session.exec(select(Service).where(Service.device_id == device_id)).one().is_open
    last = await _scan(engine, settings, [NET])
    with Session(engine) as session:
        device = session.get(Device, device_id)
        assert device is not None
        assert device.unreachable_since is not None
        service = session.exec(select(Service).where(Service.device_id == device_id)).one()
        assert service.is_open is False
        statuses = {
            f.status
            for f in session.exec(select(Finding).where(Finding.device_id == device_id)).all()
        }
        assert statuses == {FindingStatus.RESOLVED}
        changes = [
            c.kind
            for c in session.exec(
                select(ChangeEvent).where(
                    ChangeEvent.device_id == device_id, ChangeEvent.scan_run_id == last.id
                )
            ).all()
        ]
        assert sorted(changes) == sorted([ChangeKind.DEVICE_GONE, ChangeKind.SERVICE_CLOSED])
        about = [
            e
            for e in session.exec(select(Event).where(Event.scan_run_id == last.id)).all()
            if e.subject_id == device_id
        ]
        assert {EventKind.ASSET_UNREACHABLE, EventKind.SERVICE_CLOSED} <= {e.kind for e in about}
        # Each names the address the device had (a SIEM's destination, CEF dst).
        assert {e.payload["address"] for e in about} == {leaving.address}
        # The devices that stayed are untouched.
        stayed = _device_at(session, lab["modbus-plc-m340"].address)
        assert (stayed.absent_scans, stayed.unreachable_since) == (0, None)


async def test_runs_that_did_not_look_at_a_device_count_no_absence(
    engine: Engine, lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    leaving = lab[LEAVING]
    await _scan(engine, settings, [NET])
    await leaving.stop()
    # Scans of other addresses only: the leaving device's address is outside them.
    others = [d.address for name, d in lab.items() if name != LEAVING]
    for _ in range(3):
        await _scan(engine, settings, others)
    with Session(engine) as session:
        device = _device_at(session, leaving.address)
        assert (device.absent_scans, device.unreachable_since) == (0, None)
