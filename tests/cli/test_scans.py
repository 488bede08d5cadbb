"""``cybermission scans cancel``: a run stopped from another process than the one executing it."""

from datetime import timedelta
from pathlib import Path

from cybermission.db import create_db_engine, session_scope, utcnow
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.ownership import RunOwner, claim_run
from tests.cli.test_commands import _cli

ELSEWHERE = RunOwner(instance="33333333-3333-3333-3333-333333333333", host="elsewhere", pid=7)


async def _store_run(tmp_path: Path, *, beat_age_s: float, finished: bool = False) -> str:
    code, _, err = await _cli(tmp_path, "db", "upgrade")
    assert code == 0, err
    engine = create_db_engine(f"sqlite:///{tmp_path}/cli.db")
    try:
        with session_scope(engine) as session:
            run = ScanRun(targets=["127.50.2.1"], ports=[502], status=ScanStatus.RUNNING)
            claim_run(run, ELSEWHERE, now=utcnow() - timedelta(seconds=beat_age_s))
            if finished:
                run.status, run.finished_at = ScanStatus.SUCCEEDED, utcnow()
            session.add(run)
            session.flush()
            return run.id
    finally:
        engine.dispose()


def _stored(tmp_path: Path, run_id: str) -> ScanRun:
    engine = create_db_engine(f"sqlite:///{tmp_path}/cli.db")
    try:
        with session_scope(engine) as session:
            run = session.get(ScanRun, run_id)
            assert run is not None
            return run
    finally:
        engine.dispose()


async def test_cli_scans_cancel_records_the_request_for_a_live_owner(tmp_path: Path) -> None:
    run_id = await _store_run(tmp_path, beat_age_s=0)
    code, _, err = await _cli(tmp_path, "scans", "cancel", run_id, "--wait-s", "0", "--by", "eve")
    assert code == 1, err
    assert "request stays recorded" in err
    run = _stored(tmp_path, run_id)
    assert run.status is ScanStatus.RUNNING
    assert run.cancel_requested_by == "eve"


async def test_cli_scans_cancel_closes_a_run_whose_owner_is_gone(tmp_path: Path) -> None:
    run_id = await _store_run(tmp_path, beat_age_s=3600)
    code, _, err = await _cli(tmp_path, "scans", "cancel", run_id)
    assert code == 0, err
    run = _stored(tmp_path, run_id)
    assert run.status is ScanStatus.CANCELLED
    assert run.reason is not None
    assert run.reason.startswith("cancelled by cli (no heartbeat")


async def test_cli_scans_cancel_of_a_finished_run_says_so(tmp_path: Path) -> None:
    run_id = await _store_run(tmp_path, beat_age_s=0, finished=True)
    code, _, err = await _cli(tmp_path, "scans", "cancel", run_id)
    assert code == 1
    assert "already finished (succeeded)" in err


async def test_cli_scans_cancel_of_an_unknown_run_exits_2(tmp_path: Path) -> None:
    await _store_run(tmp_path, beat_age_s=0)
    code, _, err = await _cli(tmp_path, "scans", "cancel", "no-such-run")
    assert code == 2
    assert "no-such-run" in err
