"""Two ``serve`` processes on one PostgreSQL: the scheduler leader's lock connection is terminated
again and again (``pg_terminate_backend``), leadership moves between them, and every due time of
every schedule is still decided once: no tick launches twice, none is lost.

Real processes and the real PostgreSQL; the schedules scan 127.61.0.x, where nothing listens
(their runs end at once: what matters here is who launches them).
"""

import socket
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
from sqlmodel import col, select

from cybermission.db import session_scope
from cybermission.scans.models import ScanRun
from cybermission.scans.schedules import RunTrigger, Schedule, ScheduleRun
from tests.faults.processes import LOCK_HOLDERS, Service, Store, terminate_backends, wait_for
from tests.timing import scaled

SCHEDULES = 8
DUE_TIMES = 2  # each schedule fires every minute: two rounds with the leader cut all along
LEADERSHIP = "scheduler leadership taken"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _schedules(client: httpx.Client) -> list[str]:
    scope = client.post("/scopes", json={"name": "lab", "cidrs": ["127.61.0.0/24"]})
    assert scope.status_code == 201, scope.text
    ids = []
    for number in range(SCHEDULES):
        created = client.post(
            "/schedules",
            json={
                "name": f"lab-{number}",
                "scope_id": scope.json()["id"],
                "targets": [f"127.61.0.{number * 4}/30"],
                "interval_s": 60,
            },
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


def test_leader_cut_again_and_again_every_due_time_is_launched_once(
    pg_store: Store, free_port: int, tmp_path: Path
) -> None:
    # A tick every half second on both: a lost leader is replaced within a tick.
    fast = {"CYBERMISSION_SCHEDULE_TICK_S": "0.5"}
    first = Service(pg_store, free_port, tmp_path / "serve-1.log", env=fast).start()
    second: Service | None = None
    stop, cuts = threading.Event(), list[int]()
    cutter = threading.Thread(
        target=terminate_backends,
        args=(pg_store, stop, cuts),
        kwargs={"which": LOCK_HOLDERS, "every_s": 0.5},
    )
    try:
        wait_for(lambda: LEADERSHIP in first.tail(100_000), timeout_s=scaled(30), what="a leader")
        second = Service(pg_store, _free_port(), tmp_path / "serve-2.log", env=fast).start()
        with first.client() as client:
            schedule_ids = _schedules(client)
        with session_scope(pg_store.engine) as session:
            last_due = max(
                s.next_due_at
                for s in session.exec(select(Schedule)).all()
                if s.next_due_at is not None
            ) + timedelta(seconds=60 * (DUE_TIMES - 1))
        cutter.start()

        def all_fired() -> bool:
            with session_scope(pg_store.engine) as session:
                runs = session.exec(
                    select(ScheduleRun).where(ScheduleRun.trigger == RunTrigger.SCHEDULE)
                ).all()
            return sum(1 for r in runs if r.due_at <= last_due) >= SCHEDULES * DUE_TIMES

        wait_for(all_fired, timeout_s=scaled(90) + 60 * DUE_TIMES, what="every due time")
        stop.set()
        cutter.join(timeout=scaled(30))
        for service in (first, second):
            assert service.proc is not None
            assert service.proc.poll() is None, service.tail()  # both still serve
    finally:
        stop.set()
        first.stop()
        if second is not None:
            second.stop()
    assert sum(cuts) >= 2, cuts  # the leader really lost its lock, more than once
    # Leadership moved: both processes led at some point (each logs when it takes the lock).
    assert LEADERSHIP in first.tail(1_000_000)
    assert second is not None
    assert LEADERSHIP in second.tail(1_000_000)
    with session_scope(pg_store.engine) as session:
        decided = session.exec(
            select(ScheduleRun)
            .where(ScheduleRun.trigger == RunTrigger.SCHEDULE)
            .where(col(ScheduleRun.due_at) <= last_due)
        ).all()
        scan_runs = session.exec(select(ScanRun)).all()
    per_due = Counter((r.schedule_id, r.due_at) for r in decided)
    assert set(sid for sid, _ in per_due) == set(schedule_ids)
    twice = {key: n for key, n in per_due.items() if n > 1}
    assert twice == {}, f"due times decided more than once: {twice}"
    assert len(per_due) == SCHEDULES * DUE_TIMES
    # Each scan run launched belongs to exactly one decision.
    launched = Counter(r.scan_run_id for r in decided if r.scan_run_id is not None)
    assert all(n == 1 for n in launched.values()), launched
    assert {r.id for r in scan_runs} >= set(launched)
