"""Runs under process faults: ``kill -9`` and SIGTERM of ``serve`` and of the CLI, cancel from
another process. Each run ends in a stated state within a bounded time, and the next run works.

Every process is real (``cybermission serve`` / ``scan`` subprocesses), the devices are the lab's
simulators on 127.60.0.x, the store is a SQLite file or a database of the real PostgreSQL.
"""

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from cybermission.scans.models import ScanRun, ScanStatus
from tests.faults.processes import (
    LAB_TARGETS,
    Service,
    Store,
    cli,
    run_cli,
    scan_json,
    wait_for,
)
from tests.timing import scaled

pytestmark = pytest.mark.usefixtures("lab")

AFTER_THE_FAULT = {"CYBERMISSION_PACING__HOSTS_IN_FLIGHT": "16"}


def _running(store: Store, run_id: str | None = None) -> ScanRun | None:
    """A run in progress that has already stored results (so it is truly mid-scan)."""
    for run in store.runs():
        if run_id is not None and run.id != run_id:
            continue
        if run.status is ScanStatus.RUNNING and run.hosts_probed > 0:
            return run
    return None


def _finished(store: Store, run_id: str) -> ScanRun | None:
    run = store.run(run_id)
    return run if run.finished_at is not None else None


def _schedule(client: httpx.Client) -> str:
    scope = client.post("/scopes", json={"name": "lab", "cidrs": ["127.60.0.0/24"]})
    assert scope.status_code == 201, scope.text
    schedule = client.post(
        "/schedules",
        json={
            "name": "lab-hourly",
            "scope_id": scope.json()["id"],
            "targets": [LAB_TARGETS],
            "interval_s": 3600,
        },
    )
    assert schedule.status_code == 201, schedule.text
    schedule_id: str = schedule.json()["id"]
    return schedule_id


def _run_now(client: httpx.Client, schedule_id: str) -> dict[str, Any]:
    response = client.post(f"/schedules/{schedule_id}/run")
    assert response.status_code == 202, response.text
    decision: dict[str, Any] = response.json()
    return decision


def kill9_serve_mid_scheduled_run(store: Store, port: int, tmp_path: Path) -> tuple[str, str]:
    """Start ``serve``, run a schedule now, ``kill -9`` the service once the run is running;
    returns the schedule's and the run's ids (the next service closes or resumes the run)."""
    first = Service(store, port, tmp_path / "serve-1.log").start()
    try:
        with first.client() as client:
            schedule_id = _schedule(client)
            decision = _run_now(client, schedule_id)
        assert decision["outcome"] == "started", decision
        run_id: str = decision["scan_run_id"]
        wait_for(lambda: _running(store, run_id), timeout_s=scaled(60), what="the run to start")
        first.kill()
    finally:
        first.stop()
    return schedule_id, run_id


def test_kill9_of_serve_mid_scan_is_closed_at_next_start_and_the_schedule_runs_again(
    store: Store, free_port: int, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    schedule_id, run_id = kill9_serve_mid_scheduled_run(store, free_port, tmp_path)
    assert store.run(run_id).status is ScanStatus.RUNNING  # what kill -9 leaves behind

    # The start-over policy (no resume of an interrupted scheduled run: test_resume.py has it).
    second = Service(
        store,
        free_port,
        tmp_path / "serve-2.log",
        # The fault is over: the rerun goes at 16 hosts at a time, not the trickle that keeps
        # a run long enough to be hit mid-scan (what it finds does not depend on the pace).
        env={"CYBERMISSION_RUNS__SCHEDULED_RESUMES": "0", **AFTER_THE_FAULT},
    ).start()
    try:
        killed = store.run(run_id)  # closed by the start-up reaping, before the API answered
        assert killed.status is ScanStatus.INTERRUPTED
        assert killed.reason is not None
        assert "is gone" in killed.reason
        metrics = httpx.get(f"{second.url}/metrics", timeout=scaled(30)).text
        assert 'cybermission_scans_in_progress{status="running"} 0.0' in metrics
        assert 'cybermission_scans_finished_total{status="interrupted"} 1.0' in metrics
        with second.client() as client:
            again = _run_now(client, schedule_id)
            assert again["outcome"] == "started", again  # never skipped_overlap by a dead run
            rerun = wait_for(
                lambda: _finished(store, again["scan_run_id"]),
                timeout_s=scaled(180),
                what="the schedule's next run to finish",
            )
            assert rerun.status is ScanStatus.SUCCEEDED, rerun.errors
            assert rerun.hosts_probed == undisturbed["scan"]["hosts_probed"]
            assert rerun.open_ports == undisturbed["scan"]["open_ports"]
    finally:
        second.stop()


def test_sigterm_of_serve_mid_scan_records_the_interruption(
    store: Store, free_port: int, tmp_path: Path
) -> None:
    service = Service(store, free_port, tmp_path / "serve.log").start()
    try:
        with service.client() as client:
            response = client.post("/scans", json={"targets": [LAB_TARGETS]})
            assert response.status_code == 202, response.text
            run_id = response.json()["id"]
        wait_for(lambda: _running(store, run_id), timeout_s=scaled(60), what="the run to start")
        service.signal(signal.SIGTERM)
        # uvicorn re-raises the signal once shut down: the status a supervisor expects.
        assert service.wait(60) == -signal.SIGTERM, service.tail()
    finally:
        service.stop()
    run = store.run(run_id)
    assert run.status is ScanStatus.INTERRUPTED, run.errors
    assert run.reason == "interrupted: the service stopped (SIGTERM)"
    assert run.finished_at is not None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_cli_scan_ends_the_run_interrupted_with_its_counts(
    store: Store, tmp_path: Path, signum: signal.Signals
) -> None:
    log = tmp_path / "scan.log"
    proc = cli(store, "scan", LAB_TARGETS, "--format", "json", log=log)
    try:
        running = wait_for(lambda: _running(store), timeout_s=scaled(60), what="the run to start")
        proc.send_signal(signum)
        code = proc.wait(timeout=scaled(60))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 128 + signum, log.read_text()[-2000:]
    run = store.run(running.id)
    assert run.status is ScanStatus.INTERRUPTED
    assert run.reason == f"interrupted: {signum.name} received"
    report = scan_json(log)
    assert report["scan"]["status"] == "interrupted"
    assert report["scan"]["hosts_probed"] == run.hosts_probed > 0
    # The next scan on the same store works.
    again = tmp_path / "again.log"
    assert run_cli(store, "scan", "127.60.0.0/30", "--format", "json", log=again) == 0
    assert scan_json(again)["scan"]["status"] == "succeeded"


def test_kill9_of_cli_scan_is_closed_by_the_next_cli_start(store: Store, tmp_path: Path) -> None:
    proc = cli(store, "scan", LAB_TARGETS, log=tmp_path / "killed.log")
    try:
        killed = wait_for(lambda: _running(store), timeout_s=scaled(60), what="the run to start")
    finally:
        proc.kill()
        proc.wait(timeout=scaled(30))
    assert store.run(killed.id).status is ScanStatus.RUNNING
    log = tmp_path / "next.log"
    assert run_cli(store, "scan", "127.60.0.0/30", "--format", "json", log=log) == 0
    closed = store.run(killed.id)
    assert closed.status is ScanStatus.INTERRUPTED
    assert closed.reason is not None
    assert "is gone" in closed.reason


def test_cancel_from_another_process_stops_the_owner(
    store: Store, free_port: int, tmp_path: Path
) -> None:
    service = Service(store, free_port, tmp_path / "serve.log").start()
    try:
        with service.client() as client:
            response = client.post("/scans", json={"targets": [LAB_TARGETS]})
            assert response.status_code == 202, response.text
            run_id = response.json()["id"]
        wait_for(lambda: _running(store, run_id), timeout_s=scaled(60), what="the run to start")
        log = tmp_path / "cancel.log"
        code = run_cli(store, "scans", "cancel", run_id, "--by", "operator", log=log)
        assert code == 0, log.read_text()
        run = store.run(run_id)
        assert run.status is ScanStatus.CANCELLED
        assert run.reason == "cancelled by operator"
        with service.client() as client:
            again = client.post(f"/scans/{run_id}/cancel")
            assert again.status_code == 409  # really finished now
    finally:
        service.stop()
