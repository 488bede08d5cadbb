"""Two processes closing one run at once: it ends once, and the "runs ended" metric counts it
once (ownership.claim_run_end).

The reaper closes a run whose owner looks gone (its lease lapsed during a store outage, say)
while the owner, alive after all, records the run's end, or the service runner ends one the
pipeline could not. On the real PostgreSQL the reaper's close is held uncommitted while the
other closer reaches the run's row; it is committed once the other waits for it. Before, the
other closer had read the run as unfinished, so it overwrote the reaper's status and counted
the run a second time.
"""

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from cybermission.db import session_scope, utcnow
from cybermission.metric_counters import read_counters
from cybermission.scans import runner
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.ownership import RunOwner, claim_run, close_abandoned_run
from cybermission.scans.probing import ScanProgress
from cybermission.scans.recording import RunState, finish_run
from cybermission.scans.run_metrics import SCANS_FINISHED
from tests.conftest import _postgres_engine
from tests.timing import scaled

pytestmark = pytest.mark.postgres

Closer = Callable[[Engine, str], object]


def _owner_finishes(engine: Engine, run_id: str) -> object:
    progress = ScanProgress(scan_run_id=run_id, hosts_total=1)
    return finish_run(engine, RunState.closing(run_id, progress), ScanStatus.SUCCEEDED)


def _runner_ends(engine: Engine, run_id: str) -> object:
    runner._record_end(engine, run_id, ScanStatus.FAILED, "failed: internal error: RuntimeError")
    return None


CLOSERS: dict[str, Closer] = {"the owner": _owner_finishes, "the service runner": _runner_ends}


@pytest.fixture
def postgres(postgres_tables_template: str) -> Iterator[Engine]:
    yield from _postgres_engine(template=postgres_tables_template)


def _running(engine: Engine) -> str:
    with session_scope(engine) as session:
        run = ScanRun(targets=["127.50.3.1"], ports=[502], status=ScanStatus.RUNNING)
        run.started_at = utcnow() - timedelta(minutes=5)
        claim_run(run, RunOwner(instance="owner-1", host="elsewhere", pid=7))
        session.add(run)
        session.flush()
        return run.id


def _waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


@pytest.mark.parametrize("closer", ["the owner", "the service runner"])
def test_a_run_two_processes_close_at_once_ends_once_and_counts_once(
    postgres: Engine, closer: str
) -> None:
    run_id = _running(postgres)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            CLOSERS[closer](postgres, run_id)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    other = threading.Thread(target=close, daemon=True)
    with Session(postgres) as reaper:
        run = reaper.get(ScanRun, run_id)
        assert run is not None
        assert run.finished_at is None
        # The reaper won its claim (ownership._close_if_unchanged) and closes the run: written,
        # not committed yet, so the row stays locked.
        reason = "interrupted: no heartbeat from its owner"
        close_abandoned_run(reaper, run, status=ScanStatus.INTERRUPTED, reason=reason, now=utcnow())
        reaper.flush()
        other.start()
        for _ in range(int(scaled(300))):
            if _waiting_on_a_lock(postgres) or not other.is_alive():
                break
            other.join(timeout=0.1)
        reaper.commit()
    other.join(timeout=scaled(30))
    assert not other.is_alive()
    assert errors == []
    with session_scope(postgres) as session:
        ended = session.get(ScanRun, run_id)
        assert ended is not None
        assert (ended.status, ended.reason) == (ScanStatus.INTERRUPTED, reason)
        counted = read_counters(session, [SCANS_FINISHED])
    assert [(c.labels, c.value) for c in counted] == [({"status": "interrupted"}, 1.0)]
