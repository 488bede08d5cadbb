"""The run's durable spool: batches the store cannot take wait on disk, in order, and leave it
once written; a permanent store error is never spooled."""

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from cybermission.config import RunSettings
from cybermission.journal import Journal
from cybermission.probes import Observation, Transport
from cybermission.scans.host_messages import HostReportMessage
from cybermission.scans.probing import HostReport
from cybermission.scans.spool import SPOOLED, RunSpool, SpooledWriter, SpoolNotWrittenError

LOCKED = OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
FULL = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))


class FlakyStore:
    """Stores batches (their addresses) unless told to fail with ``error``."""

    def __init__(self) -> None:
        self.error: OperationalError | None = None
        self.stored: list[list[str]] = []
        self.skip_recorded: list[bool] = []

    def __call__(self, batch: Sequence[HostReport], retry_s: float, skip_recorded: bool) -> None:
        if self.error is not None:
            raise self.error
        self.stored.append([r.address for r in batch])
        self.skip_recorded.append(skip_recorded)


def _batch(*addresses: str) -> list[HostReport]:
    return [HostReport(address=a, open_ports=(502,)) for a in addresses]


def _settings(tmp_path: Path, **changes: float) -> RunSettings:
    return RunSettings(
        spool_dir=tmp_path / "spool",
        spool_after_s=0,
        spool_flush_s=0.01,
        spool_wait_s=changes.get("spool_wait_s", 30.0),
    )


def test_spool_keeps_batches_on_disk_until_written(tmp_path: Path) -> None:
    spool = RunSpool(tmp_path, "r1")
    spool.append(_batch("127.0.0.1", "127.0.0.2"))
    spool.append(_batch("127.0.0.3"))
    assert spool.path.exists()
    assert spool.waiting == 2
    oldest = spool.oldest()
    assert oldest is not None
    key, batch = oldest
    assert [r.address for r in batch] == ["127.0.0.1", "127.0.0.2"]
    spool.written(key)
    assert spool.waiting == 1
    oldest = spool.oldest()
    assert oldest is not None
    spool.written(oldest[0])
    assert spool.waiting == 0
    assert list(tmp_path.iterdir()) == []  # the file goes once empty


def test_spool_left_by_a_dead_execution_waits_for_the_resume(tmp_path: Path) -> None:
    RunSpool(tmp_path, "r1").append(_batch("127.0.0.1"))  # the process died here
    resumed = RunSpool(tmp_path, "r1")
    assert resumed.waiting == 1
    oldest = resumed.oldest()
    assert oldest is not None
    assert [r.address for r in oldest[1]] == ["127.0.0.1"]
    resumed.written(oldest[0])
    assert list(tmp_path.iterdir()) == []


def _full_report() -> HostReport:
    report = HostReport(address="127.0.0.9", open_ports=(102, 502))
    report.observations.append(
        Observation(
            probe="modbus",
            protocol="modbus",
            address="127.0.0.9",
            port=502,
            transport=Transport.TCP,
            facts={"vendor": "Schneider Electric", "units": [{"unit_id": 1, "model": None}]},
            observed_at=datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
        )
    )
    report.errors.append({"target": "127.0.0.9:102", "stage": "s7", "error": "reset"})
    report.sent.of("modbus")["fc43/mei14/basic"] += 2
    return report


def test_spool_stores_the_wire_form_of_a_report_and_reads_it_back_whole(tmp_path: Path) -> None:
    spool = RunSpool(tmp_path, "r1")
    spool.append([_full_report()])
    oldest = spool.oldest()
    assert oldest is not None
    assert oldest[1] == [_full_report()]
    (part,) = Journal(spool.path).unconfirmed()
    # One serialiser: the spool's JSON is what a results part carries for the host.
    assert part.body["hosts"] == [HostReportMessage.of(_full_report()).model_dump(mode="json")]
    spool.close()


def test_spool_file_of_the_older_release_is_read(tmp_path: Path) -> None:
    """Spool files written before the spool used the wire's model (hand-built JSON: offsets as
    +00:00, no ``errors``/``sent`` keys in the oldest) are still replayed on resume."""
    older = {
        "address": "127.0.0.9",
        "open_ports": [102, 502],
        "observations": [
            {
                "probe": "modbus",
                "protocol": "modbus",
                "address": "127.0.0.9",
                "port": 502,
                "transport": "tcp",
                "facts": {"vendor": "Schneider Electric", "units": [{"unit_id": 1, "model": None}]},
                "observed_at": "2026-03-01T12:30:00+00:00",
            }
        ],
        "errors": [{"target": "127.0.0.9:102", "stage": "s7", "error": "reset"}],
        "sent": {"modbus": {"fc43/mei14/basic": 2}},
    }
    oldest_form = {"address": "127.0.0.8", "open_ports": [502], "observations": []}
    journal = Journal(tmp_path / "run-r1.journal")
    journal.record("k1", SPOOLED, [{"hosts": [older, oldest_form]}])
    journal.close()
    oldest = RunSpool(tmp_path, "r1").oldest()
    assert oldest is not None
    assert oldest[1] == [_full_report(), HostReport(address="127.0.0.8", open_ports=(502,))]


async def test_writer_spools_while_the_store_is_away_then_writes_in_order(tmp_path: Path) -> None:
    store = FlakyStore()
    writer = SpooledWriter(store, RunSpool(tmp_path / "spool", "r1"), _settings(tmp_path))
    await writer.write(_batch("127.0.0.1"))
    store.error = LOCKED
    await writer.write(_batch("127.0.0.2"))
    await writer.write(_batch("127.0.0.3"))
    assert writer.spooled == 2
    store.error = None
    await asyncio.sleep(0.02)  # past the flush interval
    await writer.write(_batch("127.0.0.4"))  # behind the spool: order kept
    await writer.finish()
    assert store.stored == [["127.0.0.1"], ["127.0.0.2"], ["127.0.0.3"], ["127.0.0.4"]]
    # Spooled batches are written skipping hosts already recorded (a commit's lost answer).
    assert store.skip_recorded == [False, True, True, False]
    assert not (tmp_path / "spool" / "run-r1.journal").exists()


async def test_writer_never_spools_a_permanent_error(tmp_path: Path) -> None:
    store = FlakyStore()
    store.error = FULL
    writer = SpooledWriter(store, RunSpool(tmp_path / "spool", "r1"), _settings(tmp_path))
    with pytest.raises(OperationalError, match="disk is full"):
        await writer.write(_batch("127.0.0.1"))
    assert writer.spooled == 0


async def test_writer_end_gives_up_after_the_wait_keeping_the_spool(tmp_path: Path) -> None:
    store = FlakyStore()
    store.error = LOCKED
    spool = RunSpool(tmp_path / "spool", "r1")
    writer = SpooledWriter(store, spool, _settings(tmp_path, spool_wait_s=0.05))
    await writer.write(_batch("127.0.0.1"))
    with pytest.raises(SpoolNotWrittenError, match="1 batches of results stay in"):
        await writer.finish()
    assert spool.path.exists()
