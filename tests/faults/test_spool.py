"""The store away for longer than the retry window mid-run: results wait in the run's durable
local spool and are written once it is back; the run ends succeeded with everything stored once.
A run killed while results wait there writes them when it is resumed, and does not probe their
hosts again.

The CLI reaches the real PostgreSQL through a relay the test cuts (every connection reset, new
ones refused) and restores on the same port, as a restart of the server or a cut link looks.
"""

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from cybermission.db import session_scope, utcnow
from cybermission.scans.models import ObservationRecord, ScanRunHost, ScanStatus
from tests.faults.processes import (
    LAB_TARGETS,
    Store,
    cli,
    inventory,
    run_cli,
    scan_json,
    stored_observations,
    wait_for,
)
from tests.faults.proxy import TcpRelay
from tests.faults.test_resume import _assert_equals_undisturbed, _finished_hosts
from tests.faults.test_runs import _running
from tests.timing import scaled

pytestmark = pytest.mark.usefixtures("lab")

RETRY_WINDOW_S = 4.0


def test_postgres_away_longer_than_the_retry_window_spools_and_loses_nothing(
    pg_store: Store, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    spool = tmp_path / "spool"
    with TcpRelay(("127.0.0.1", 5432)) as relay:
        through = Store(
            url=pg_store.url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}"), kind="postgres"
        )
        assert through.url != pg_store.url
        log = tmp_path / "scan.log"
        proc = cli(
            through,
            "scan",
            LAB_TARGETS,
            "--format",
            "json",
            log=log,
            CYBERMISSION_RUNS__STORE_RETRY_S=str(RETRY_WINDOW_S),
            CYBERMISSION_RUNS__SPOOL_AFTER_S="1",
            CYBERMISSION_RUNS__SPOOL_FLUSH_S="0.5",
            CYBERMISSION_RUNS__SPOOL_DIR=str(spool),
        )
        try:
            running = wait_for(
                lambda: _running(pg_store), timeout_s=scaled(60), what="the run to store results"
            )
            relay.cut()
            down_at = time.monotonic()
            wait_for(
                lambda: any(spool.glob("run-*.journal")),
                timeout_s=scaled(60),
                what="results to wait in the spool",
            )
            # Away for three retry windows: without the spool the run would have failed.
            time.sleep(max(0.0, down_at + 3 * RETRY_WINDOW_S - time.monotonic()))
            assert proc.poll() is None, log.read_text()[-3000:]
            relay.restore()
            code = proc.wait(timeout=scaled(300))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=scaled(30))
        through.dispose()
    assert code == 0, log.read_text()[-3000:]
    assert "results spooled" in log.read_text()
    report = scan_json(log)
    assert report["scan"]["id"] == running.id
    assert report["scan"]["status"] == "succeeded", report["scan"]
    assert inventory(report) == inventory(undisturbed)
    run = pg_store.run(running.id)
    assert run.status is ScanStatus.SUCCEEDED
    expected = undisturbed["scan"]
    assert (run.hosts_probed, run.open_ports) == (expected["hosts_probed"], expected["open_ports"])
    # Nothing twice: each observation and each host once, what was sent as an undisturbed run.
    assert stored_observations(pg_store, run.id) == undisturbed["observations"]
    assert run.observations == undisturbed["observations"]
    with session_scope(pg_store.engine) as session:
        hosts = session.exec(
            select(ScanRunHost.address).where(ScanRunHost.scan_run_id == run.id)
        ).all()
    assert len(hosts) == len(set(hosts)) == expected["hosts_probed"]
    assert run.sent == expected["sent"]
    assert list(spool.iterdir()) == []  # written, then removed


def _spooled_addresses(journal: Path) -> set[str]:
    """The hosts waiting in a run's spool file (read as it is on disk); none while the file is
    being made (it exists a moment before its tables: seen once on a loaded machine, "no such
    table: part")."""
    if not journal.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            bodies = db.execute("SELECT body FROM part WHERE confirmed_at IS NULL").fetchall()
    except sqlite3.OperationalError:
        return set()
    return {host["address"] for (body,) in bodies for host in json.loads(body)["hosts"]}


def test_results_spooled_when_the_cli_was_killed_are_written_on_resume_not_probed_again(
    pg_store: Store, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    spool = tmp_path / "spool"
    env = {
        "CYBERMISSION_RUNS__STORE_RETRY_S": str(RETRY_WINDOW_S),
        "CYBERMISSION_RUNS__SPOOL_AFTER_S": "1",
        "CYBERMISSION_RUNS__SPOOL_FLUSH_S": "0.5",
        "CYBERMISSION_RUNS__SPOOL_DIR": str(spool),
    }
    with TcpRelay(("127.0.0.1", 5432)) as relay:
        through = Store(
            url=pg_store.url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}"), kind="postgres"
        )
        proc = cli(
            through, "scan", LAB_TARGETS, "--format", "json", log=tmp_path / "killed.log", **env
        )
        try:
            running = wait_for(
                lambda: _running(pg_store), timeout_s=scaled(60), what="the run to store results"
            )
            relay.cut()
            journal = wait_for(
                lambda: next(spool.glob("run-*.journal"), None),
                timeout_s=scaled(60),
                what="results to wait in the spool",
            )
            # Hosts only the spool holds. A batch whose COMMIT went through as the relay cut
            # the link (its answer lost) is spooled too, though stored: on a loaded machine
            # that batch can be the first one spooled, so "some host spooled" is not enough.
            wait_for(
                lambda: (
                    (_spooled_addresses(journal) - set(_finished_hosts(pg_store, running.id)))
                    or None
                ),
                timeout_s=scaled(60),
                what="hosts in the spool and not in the store",
            )
        finally:
            proc.kill()  # kill -9 while the store is away: the spool is all that holds them
            proc.wait(timeout=scaled(30))
        killed_at = utcnow()
        through.dispose()
    spooled = _spooled_addresses(journal) - set(_finished_hosts(pg_store, running.id))
    assert spooled  # not in the store yet: only resume can write them, from the spool

    log = tmp_path / "resume.log"
    code = run_cli(
        pg_store, "scans", "resume", running.id, "--format", "json", log=log, timeout_s=300, **env
    )
    assert code == 0, log.read_text()[-3000:]
    assert "spooled results of the interrupted execution stored" in log.read_text()
    assert inventory(scan_json(log)) == inventory(undisturbed)
    _assert_equals_undisturbed(pg_store, pg_store.run(running.id), undisturbed)
    with session_scope(pg_store.engine) as session:
        seen = session.exec(
            select(ObservationRecord.address, ObservationRecord.observed_at)
            .where(ObservationRecord.scan_run_id == running.id)
            .where(col(ObservationRecord.address).in_(spooled))
        ).all()
    # Written from the spool: what was observed before the kill, not a second probe's answers.
    assert seen
    assert all(at < killed_at for _, at in seen), sorted(seen)
    assert list(spool.iterdir()) == []


def test_a_store_link_that_stops_answering_ends_the_cli_scan_and_resume_loses_nothing(
    pg_store: Store, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    """The link to PostgreSQL goes half-open mid-scan: the relay keeps every connection and
    accepts new ones, but forwards nothing and resets nothing (no error ever comes). The CLI
    gives each stuck connection up after the stall deadline, spools what it probed, and ends on
    its own (before the deadline it waited for ever on the first batch); the resumed run writes
    the spool and equals an undisturbed one."""
    spool = tmp_path / "spool"
    env = {
        "CYBERMISSION_RUNS__STORE_RETRY_S": str(RETRY_WINDOW_S),
        "CYBERMISSION_RUNS__SPOOL_AFTER_S": "1",
        "CYBERMISSION_RUNS__SPOOL_FLUSH_S": "0.5",
        "CYBERMISSION_RUNS__SPOOL_WAIT_S": "5",
        "CYBERMISSION_RUNS__SPOOL_DIR": str(spool),
        "CYBERMISSION_STORE__STALL_S": "3",
        "CYBERMISSION_STORE__CONNECT_TIMEOUT_S": "2",
    }
    log = tmp_path / "stalled.log"
    with TcpRelay(("127.0.0.1", 5432)) as relay:
        through = Store(
            url=pg_store.url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}"), kind="postgres"
        )
        proc = cli(through, "scan", LAB_TARGETS, "--format", "json", log=log, **env)
        try:
            running = wait_for(
                lambda: _running(pg_store), timeout_s=scaled(60), what="the run to store results"
            )
            relay.stall()
            # Bounded: the scan ends by itself while the link stays half-open.
            code = proc.wait(timeout=scaled(300))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=scaled(30))
        through.dispose()
    text = log.read_text()
    assert "store did not answer: connection given up" in text, text[-3000:]
    assert "results spooled" in text, text[-3000:]
    # Its end could not be recorded either: it says so, and the results stay in the spool.
    assert code == 1, text[-3000:]
    assert "the run could not be recorded" in text, text[-3000:]
    journal = next(spool.glob("run-*.journal"))
    # Hosts only the spool holds (a batch stored as the link stalled, its answer held, is
    # spooled too: resume does not store it twice).
    assert _spooled_addresses(journal) - set(_finished_hosts(pg_store, running.id))

    resumed = tmp_path / "resume.log"
    code = run_cli(
        pg_store, "scans", "resume", running.id, "--format", "json", log=resumed,
        timeout_s=300, **env,
    )  # fmt: skip
    assert code == 0, resumed.read_text()[-3000:]
    assert "spooled results of the interrupted execution stored" in resumed.read_text()
    assert inventory(scan_json(resumed)) == inventory(undisturbed)
    _assert_equals_undisturbed(pg_store, pg_store.run(running.id), undisturbed)
    assert list(spool.iterdir()) == []
