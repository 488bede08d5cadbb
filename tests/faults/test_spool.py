"""The store away for longer than the retry window mid-run: results wait in the run's durable
local spool and are written once it is back; the run ends succeeded with everything stored once.

The CLI reaches the real PostgreSQL through a relay the test cuts (every connection reset, new
ones refused) and restores on the same port, as a restart of the server or a cut link looks.
"""

import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from cybermission.db import session_scope
from cybermission.scans.models import ScanRunHost, ScanStatus
from tests.faults.processes import (
    LAB_TARGETS,
    Store,
    cli,
    inventory,
    scan_json,
    stored_observations,
    wait_for,
)
from tests.faults.proxy import TcpRelay
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
