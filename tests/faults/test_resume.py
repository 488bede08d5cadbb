"""Resume after a fault: a run interrupted by ``kill -9`` of the CLI or of ``serve`` is resumed
(CLI, API, or its schedule's next tick) and ends as an undisturbed run of the same targets would:
the same inventory and findings, every observation once, and what was sent to the devices no more
than an undisturbed run sends (the hosts it had finished are not probed again).

Real processes, the lab's simulators on 127.60.0.x, SQLite and the real PostgreSQL.
"""

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from cybermission.db import session_scope
from cybermission.scans.models import ScanRun, ScanRunHost, ScanStatus
from tests.faults.processes import (
    LAB_TARGETS,
    Service,
    Store,
    cli,
    inventory,
    run_cli,
    scan_json,
    stored_observations,
    wait_for,
)
from tests.faults.test_runs import (
    _finished,
    _running,
    kill9_serve_mid_scheduled_run,
)
from tests.timing import scaled

pytestmark = pytest.mark.usefixtures("lab")

# 16 addresses of the fault lab, the first of them (127.60.0.16) a device.
RUNNING_TARGETS = "127.60.0.16/28"


def _finished_hosts(store: Store, run_id: str) -> list[str]:
    with session_scope(store.engine) as session:
        return list(
            session.exec(select(ScanRunHost.address).where(ScanRunHost.scan_run_id == run_id)).all()
        )


def _killed_mid_run(store: Store, run_id: str, undisturbed: dict[str, Any]) -> list[str]:
    """The hosts the killed run had finished: some, not all (else the test proves nothing)."""
    done = _finished_hosts(store, run_id)
    assert 0 < len(done) < undisturbed["scan"]["hosts_probed"], len(done)
    return done


def _assert_equals_undisturbed(store: Store, run: ScanRun, undisturbed: dict[str, Any]) -> None:
    """The resumed run's row and store against the undisturbed run's report."""
    assert run.status is ScanStatus.SUCCEEDED, (run.reason, run.errors)
    assert run.resumes == 1
    expected = undisturbed["scan"]
    assert (run.hosts_probed, run.open_ports) == (expected["hosts_probed"], expected["open_ports"])
    # Each observation once: a host stored before the kill and again after would count twice.
    assert stored_observations(store, run.id) == undisturbed["observations"]
    assert run.observations == undisturbed["observations"]
    # Every host finished exactly once, across both parts.
    hosts = _finished_hosts(store, run.id)
    assert len(hosts) == len(set(hosts)) == expected["hosts_probed"]
    # A finished host probed again would add its requests a second time.
    assert run.sent == expected["sent"]


def test_kill9_of_cli_scan_then_resume_equals_an_undisturbed_run(
    store: Store, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    proc = cli(store, "scan", LAB_TARGETS, "--format", "json", log=tmp_path / "killed.log")
    try:
        killed = wait_for(lambda: _running(store), timeout_s=scaled(60), what="the run to start")
    finally:
        proc.kill()
        proc.wait(timeout=scaled(30))
    done = _killed_mid_run(store, killed.id, undisturbed)
    assert store.run(killed.id).status is ScanStatus.RUNNING  # what kill -9 leaves behind

    log = tmp_path / "resume.log"
    code = run_cli(store, "scans", "resume", killed.id, "--format", "json", log=log, timeout_s=300)
    assert code == 0, log.read_text()[-3000:]
    report = scan_json(log)
    assert report["scan"]["id"] == killed.id
    assert inventory(report) == inventory(undisturbed)
    run = store.run(killed.id)
    _assert_equals_undisturbed(store, run, undisturbed)
    assert set(done) <= set(_finished_hosts(store, run.id))
    # The run that was killed began when it began: what it saw before the kill counts as seen.
    assert run.started_at == killed.started_at

    # Finished now: resuming it again is refused, nothing changes.
    again = tmp_path / "again.log"
    assert run_cli(store, "scans", "resume", killed.id, log=again) == 2
    assert "only an interrupted run can be resumed" in again.read_text()
    assert store.run(killed.id).resumes == 1


def test_resume_refuses_a_run_still_running_in_a_live_process(store: Store, tmp_path: Path) -> None:
    # Two connects a second overall, one host at a time: the run lasts minutes, so it is surely
    # still running when the resume (a second process, slow to start on a loaded machine)
    # asks; CI once saw the unpaced scan end in between. Its first host is a lab device, so the
    # run counts as running (a live host stored) after that host's own connects: from the lab's
    # first address, 4 hosts at a time, 11 silent addresses came first (170 s a case under load).
    proc = cli(
        store,
        "scan",
        RUNNING_TARGETS,
        log=tmp_path / "scan.log",
        CYBERMISSION_PACING__GLOBAL_RATE_PER_S="2",
        CYBERMISSION_PACING__HOSTS_IN_FLIGHT="1",
    )
    try:
        running = wait_for(lambda: _running(store), timeout_s=scaled(60), what="the run to start")
        log = tmp_path / "resume.log"
        assert run_cli(store, "scans", "resume", running.id, log=log) == 2
        assert "is still running" in log.read_text()
        assert store.run(running.id).status is ScanStatus.RUNNING
        assert proc.poll() is None  # its owner goes on
    finally:
        proc.kill()
        proc.wait(timeout=scaled(30))


def test_kill9_of_serve_then_api_resume_equals_an_undisturbed_run(
    store: Store, free_port: int, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    first = Service(store, free_port, tmp_path / "serve-1.log").start()
    try:
        with first.client() as client:
            response = client.post("/scans", json={"targets": [LAB_TARGETS]})
            assert response.status_code == 202, response.text
            run_id = response.json()["id"]
        wait_for(lambda: _running(store, run_id), timeout_s=scaled(60), what="the run to start")
        first.kill()
    finally:
        first.stop()
    _killed_mid_run(store, run_id, undisturbed)

    second = Service(store, free_port, tmp_path / "serve-2.log").start()
    try:
        with second.client() as client:
            response = client.post(f"/scans/{run_id}/resume")
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "queued"
            run = wait_for(
                lambda: _finished(store, run_id),
                timeout_s=scaled(180),
                what="the resumed run to finish",
            )
            _assert_equals_undisturbed(store, run, undisturbed)
            refused = client.post(f"/scans/{run_id}/resume")
            assert refused.status_code == 409, refused.text
            assert "only an interrupted run can be resumed" in refused.text
            assert client.post("/scans/no-such-run/resume").status_code == 404
    finally:
        second.stop()


def test_kill9_of_serve_mid_scheduled_run_is_resumed_by_the_next_tick(
    store: Store, free_port: int, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    schedule_id, run_id = kill9_serve_mid_scheduled_run(store, free_port, tmp_path)
    _killed_mid_run(store, run_id, undisturbed)

    second = Service(store, free_port, tmp_path / "serve-2.log").start()
    try:
        run = wait_for(
            lambda: _finished(store, run_id) if store.run(run_id).resumes else None,
            timeout_s=scaled(180),
            what="the schedule's tick to resume the run and the run to finish",
        )
        _assert_equals_undisturbed(store, run, undisturbed)
        with second.client() as client:
            runs = client.get(f"/schedules/{schedule_id}/runs").json()
        resumed = [r for r in runs if r["trigger"] == "resume"]
        assert [r["scan_run_id"] for r in resumed] == [run_id], runs
        assert resumed[0]["outcome"] == "started"
        assert len({r["scan_run_id"] for r in runs if r["scan_run_id"]}) == 1  # no fresh start
    finally:
        second.stop()
