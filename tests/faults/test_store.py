"""Runs under store faults: PostgreSQL backends terminated mid-scan, a full disk under SQLite,
concurrent writers on one SQLite file. Nothing hangs, nothing is lost or written twice, and a run
that cannot go on fails with the reason."""

import contextlib
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from cybermission.scans.models import ScanStatus
from tests.faults.processes import (
    LAB_TARGETS,
    ROOT,
    Store,
    cli,
    environment,
    inventory,
    scan_json,
    stored_observations,
    terminate_backends,
    wait_for,
)
from tests.timing import scaled

pytestmark = pytest.mark.usefixtures("lab")


def test_postgres_backends_terminated_mid_scan_lose_nothing(
    pg_store: Store, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    log = tmp_path / "scan.log"
    proc = cli(pg_store, "scan", LAB_TARGETS, "--format", "json", log=log)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=terminate_backends, args=(pg_store, stop, killed))
    try:
        wait_for(
            lambda: any(r.status is ScanStatus.RUNNING for r in pg_store.runs()),
            timeout_s=scaled(60),
            what="the run to start",
        )
        killer.start()
        # Connections die every second for as long as the scan runs (or 20 s of it).
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        stop.set()
        code = proc.wait(timeout=scaled(180))  # bounded: never a hang
    finally:
        stop.set()
        if killer.is_alive():
            killer.join()
        if proc.poll() is None:
            proc.kill()
    assert sum(killed) > 0, "no backend was terminated: the fault did not happen"
    assert code == 0, log.read_text()[-3000:]
    report = scan_json(log)
    assert report["scan"]["status"] == "succeeded", report["scan"]["errors"]
    assert inventory(report) == inventory(undisturbed)
    run_id = report["scan"]["id"]
    assert stored_observations(pg_store, run_id) == undisturbed["observations"]
    assert pg_store.run(run_id).observations == undisturbed["observations"]


def test_concurrent_cli_scans_on_one_sqlite_file_all_succeed(
    sqlite_store: Store, tmp_path: Path
) -> None:
    nets = ["127.60.0.0/28", "127.60.0.16/28", "127.60.0.32/28"]
    logs = [tmp_path / f"scan-{i}.log" for i in range(len(nets))]
    procs = [
        cli(sqlite_store, "scan", net, "--format", "json", log=log)
        for net, log in zip(nets, logs, strict=True)
    ]
    codes = [p.wait(timeout=scaled(300)) for p in procs]
    for code, log in zip(codes, logs, strict=True):
        assert code == 0, log.read_text()[-3000:]
        report = scan_json(log)
        assert report["scan"]["status"] == "succeeded", report["scan"]["errors"]
        assert report["scan"]["hosts_probed"] > 0
        run_id = report["scan"]["id"]
        assert stored_observations(sqlite_store, run_id) == sqlite_store.run(run_id).observations


FULL_DISK_SCRIPT = """
set -u
mount -t tmpfs -o size=6m tmpfs "$MNT"
cp "$STORE" "$MNT/store.db"
# Fill the file system, then free a little: the scan starts and runs out of space mid-way.
dd if=/dev/zero of="$MNT/spare" bs=4k count=32 status=none
dd if=/dev/zero of="$MNT/filler" bs=64k status=none 2>/dev/null
rm "$MNT/spare"
export CYBERMISSION_DATABASE_URL="sqlite:///$MNT/store.db"
timeout -s KILL "$BOUND" "$PY" -m cybermission scan "$TARGETS" --format json \
    > "$OUT/scan.out" 2> "$OUT/scan.log"
echo $? > "$OUT/scan.code"
"$PY" -c "$DUMP" > "$OUT/before.json"
rm "$MNT/filler"  # space comes back; the next start of any command sees the run
"$PY" -m cybermission scan 127.60.0.0/30 --format json > "$OUT/next.out" 2> "$OUT/next.log"
echo $? > "$OUT/next.code"
"$PY" -c "$DUMP" > "$OUT/after.json"
"""

DUMP = """
import json, os
from cybermission.db import create_db_engine, session_scope
from cybermission.scans.models import ScanRun
from sqlmodel import select
engine = create_db_engine(os.environ["CYBERMISSION_DATABASE_URL"])
with session_scope(engine) as session:
    runs = session.exec(select(ScanRun).order_by(ScanRun.created_at)).all()
    print(json.dumps([{"id": r.id, "status": str(r.status), "reason": r.reason} for r in runs]))
"""


def test_sqlite_disk_full_mid_scan_fails_the_run_with_the_reason(
    sqlite_store: Store, tmp_path: Path
) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed for a private tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    bound_s = int(scaled(120))
    env = environment(
        sqlite_store,
        MNT=str(mount),
        STORE=sqlite_store.url.removeprefix("sqlite:///"),
        OUT=str(tmp_path),
        PY=sys.executable,
        TARGETS=LAB_TARGETS,
        BOUND=str(bound_s),
        DUMP=DUMP,
    )
    sqlite_store.dispose()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", FULL_DISK_SCRIPT],
        env=env,
        cwd=ROOT,
        timeout=scaled(300),
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    stderr = (tmp_path / "scan.log").read_text()
    code = int((tmp_path / "scan.code").read_text())
    assert code != 137, f"the scan hung until killed after {bound_s} s:\n{stderr[-3000:]}"
    assert code == 1, stderr[-3000:]
    [before] = json.loads((tmp_path / "before.json").read_text())
    after = json.loads((tmp_path / "after.json").read_text())
    if before["status"] == ScanStatus.FAILED:
        # The end of the run fitted: failed, with the store's own words.
        assert "full" in before["reason"], before
        assert after[0] == before
    else:
        # Not even the end of the run fitted: the scan said so, and the next start closed it.
        assert "could not be recorded" in stderr, stderr[-3000:]
        assert after[0]["status"] == ScanStatus.INTERRUPTED, after
    assert int((tmp_path / "next.code").read_text()) == 0
    assert after[1]["status"] == ScanStatus.SUCCEEDED, after
