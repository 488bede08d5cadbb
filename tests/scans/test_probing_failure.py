"""A run whose probing side fails or crashes part-way ends failed, with what it had probed stored
first: the writer stores the reports it was handed before the run's end is written, and none is
left behind. Devices on 127.53.3.x."""

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import PacingProfile, PacingSettings, Settings, load_settings
from cybermission.errors import CybermissionError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.inventory.models import IPAddress
from cybermission.scans import pipeline
from cybermission.scans.models import ScanStatus
from cybermission.scans.probing import HostReport
from cybermission.scans.sweep import HostResult
from scanners.lab.modbus_devices import LabDevice, modbus_lab_devices
from scanners.lab.runner import listening
from tests.scans.stored_runs import scan_now
from tests.timing import scaled

BASE = "127.53.3.0"
GUARD = ScopeGuard([ScopeRule.build("probing-failure-tests", ["127.53.3.0/24"])])


@pytest.fixture
async def devices() -> AsyncIterator[list[LabDevice]]:
    found = modbus_lab_devices(BASE)[:3]
    async with listening(found):
        yield found


def _settings(tmp_path: Path) -> Settings:
    pacing = PacingSettings(
        profile=PacingProfile.LAB, connect_timeout_s=scaled(1.0), probe_timeout_s=scaled(1.5)
    )
    return load_settings(database_url=f"sqlite:///{tmp_path}/x.db", pacing=pacing)


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (CybermissionError("the probe processes stopped"), "failed: the probe processes stopped"),
        (RuntimeError("a bug"), "failed: internal error: RuntimeError"),
    ],
)
async def test_probing_that_fails_after_its_reports_ends_the_run_with_them_stored(
    engine: Engine,
    tmp_path: Path,
    devices: list[LabDevice],
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    reason: str,
) -> None:
    probe_specs = pipeline.probe_specs

    async def then_fail(*args: Any, **kwargs: Any) -> AsyncGenerator[HostResult | HostReport]:
        # Every host's report handed over, then the probing side fails before it ends.
        async for item in probe_specs(*args, **kwargs):
            yield item
        raise failure

    monkeypatch.setattr(pipeline, "probe_specs", then_fail)
    run = await scan_now(engine, _settings(tmp_path), [d.address for d in devices], guard=GUARD)

    assert run.status is ScanStatus.FAILED
    assert run.reason == reason
    assert run.finished_at is not None
    with Session(engine) as session:
        stored = set(session.exec(select(IPAddress.address)).all())
    assert stored == {d.address for d in devices}, "hosts probed before the failure were lost"
    assert run.sent.get("modbus")
