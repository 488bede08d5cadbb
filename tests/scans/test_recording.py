"""Recording's batches: the garbage collector held off while one is written, as it was after."""

import gc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.scans import recording
from cybermission.scans.recording import RunState, collector_paused


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
