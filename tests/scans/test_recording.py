"""Recording's batches: the garbage collector held off while one is written, as it was after."""

import gc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import Settings
from cybermission.findings.models import Finding
from cybermission.probes import Observation, Transport
from cybermission.scans import recording
from cybermission.scans.models import ScanRun
from cybermission.scans.probing import HostReport
from cybermission.scans.recording import RunState, collector_paused, run_state, store_reports


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.enable()
    yield
    if not enabled:
        gc.disable()


def _unknown_run() -> RunState:
    return cast(RunState, SimpleNamespace(run_id="no-such-run"))


def test_store_batch_writes_with_the_collector_paused(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    during: list[bool] = []

    def store_reports(_session: Session, _state: RunState, _reports: Any) -> None:
        during.append(gc.isenabled())

    monkeypatch.setattr(recording, "store_reports", store_reports)
    recording.store_batch(sqlite_engine, _unknown_run(), [])
    assert during == [False]
    assert gc.isenabled()


def test_store_batch_that_fails_turns_the_collector_back_on(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def store_reports(_session: Session, _state: RunState, _reports: Any) -> None:
        raise RuntimeError("store failed")

    monkeypatch.setattr(recording, "store_reports", store_reports)
    with pytest.raises(RuntimeError, match="store failed"):
        recording.store_batch(sqlite_engine, _unknown_run(), [])
    assert gc.isenabled()


def test_collector_stays_paused_until_the_last_overlapping_writer_is_done() -> None:
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second writer's batch is still being written
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_collector_turned_off_before_a_batch_stays_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_store_reports_host_seen_twice_in_a_batch_gets_each_finding_once(
    engine: Engine, settings: Settings
) -> None:
    """A batch's new devices skip the findings lookup (issue 12). A host reported twice in one
    batch (the second report finds the device the first created) still gets one finding per
    rule, and the run counts each once."""
    address = "127.50.44.11"
    observation = Observation(
        probe="modbus",
        protocol="modbus",
        address=address,
        port=502,
        transport=Transport.TCP,
        facts={"vendor": "Schneider Electric", "product_code": "BMX P34 2020"},
    )
    report = HostReport(address, (502,), observations=[observation])
    with Session(engine, expire_on_commit=False) as session:
        run = ScanRun(targets=[address], ports=[502], hosts_total=1)
        session.add(run)
        session.commit()
        state = run_state(session, settings, run.id)
        store_reports(session, state, [report, report])
        session.commit()
        keys = list(session.exec(select(Finding.dedup_key)))
    assert keys
    assert sorted(keys) == sorted(set(keys))
    assert state.progress.findings == len(keys)
