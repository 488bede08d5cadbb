"""A run's start: nothing is sent before the run is claimed, and what only its writer needs (rules,
placements, advisories) is read while the probing side sweeps; a failure there still ends the run
failed, with its reason and what it sent. Devices on 127.53.1.x."""

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import PacingProfile, PacingSettings, Settings, load_settings
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.probes import Observation
from cybermission.rules.loader import Rule
from cybermission.scans import pipeline
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.probing import HostReport
from scanners.lab.modbus_devices import LabDevice, modbus_lab_devices
from scanners.lab.runner import listening
from tests.scans.stored_runs import scan_now
from tests.timing import scaled

BASE = "127.53.1.0"
GUARD = ScopeGuard([ScopeRule.build("run-start-tests", ["127.53.1.0/24"])])


@pytest.fixture
async def m340() -> AsyncIterator[LabDevice]:
    (device,) = [d for d in modbus_lab_devices(BASE) if d.name == "modbus-plc-m340"]
    async with listening([device]):
        yield device


def _settings(tmp_path: Path, rules: Path = Path("rules")) -> Settings:
    pacing = PacingSettings(
        profile=PacingProfile.LAB, connect_timeout_s=scaled(1.0), probe_timeout_s=scaled(1.5)
    )
    return load_settings(
        database_url=f"sqlite:///{tmp_path}/x.db", pacing=pacing, rules_dirs=[rules]
    )


async def test_the_first_packet_finds_the_run_claimed(engine: Engine, tmp_path: Path) -> None:
    # What the store holds when a connection reaches the target: read by the target itself.
    seen: list[tuple[ScanStatus, int | None]] = []

    def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with Session(engine) as session:
            run = session.exec(select(ScanRun)).one()
            seen.append((run.status, run.owner_pid))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.53.1.2", 502)
    try:
        finished = await scan_now(engine, _settings(tmp_path), ["127.53.1.2"], guard=GUARD)
    finally:
        server.close()
        await server.wait_closed()
    assert seen
    assert seen[0] == (ScanStatus.RUNNING, os.getpid())
    assert finished.owner_pid == os.getpid()


async def test_rules_that_fail_to_load_after_probing_began_fail_the_run_with_the_reason(
    engine: Engine, tmp_path: Path, m340: LabDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rules are read while the device is probed: their loading waits (bounded) until the
    # device's report reached the writer's queue, then fails as a missing folder does.
    queued = threading.Event()
    load_rules = pipeline.load_rules
    prefer = pipeline.prefer_engine_observations

    def on_report(report: HostReport, found: Mapping[tuple[str, int], Observation]) -> None:
        prefer(report, found)
        queued.set()  # the report is queued right after this returns

    def slow_load_rules(dirs: Sequence[Path]) -> list[Rule]:
        queued.wait(timeout=scaled(20))
        return load_rules(dirs)

    monkeypatch.setattr(pipeline, "prefer_engine_observations", on_report)
    monkeypatch.setattr(pipeline, "load_rules", slow_load_rules)
    missing = tmp_path / "no-rules"
    run = await scan_now(engine, _settings(tmp_path, missing), [m340.address], guard=GUARD)

    assert run.status is ScanStatus.FAILED
    assert run.reason is not None
    assert run.reason.startswith("failed: ")
    assert "rules folder does not exist" in run.reason
    assert run.finished_at is not None
    # Probing began before the rules failed, and what it sent is recorded.
    assert m340.requests
    assert run.sent.get("modbus")
    with Session(engine) as session:
        assert session.get(ScanRun, run.id).status is ScanStatus.FAILED  # type: ignore[union-attr]
