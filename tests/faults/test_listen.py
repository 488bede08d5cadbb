"""Listening sessions under process faults: a ``cybermission listen`` killed outright (``kill -9``)
or frozen (SIGSTOP) does not stay ``running``: its run is owned and leased like a scan's, and the
next process that looks (another ``listen`` at start-up, the reaper of ``serve``) closes it
``interrupted`` with the reason; what it stored stays, the next session works, and a cancel
request from the API stops a live one.

The session listens on one end of a veth pair between two namespaces (``tests/mirror.py``) while
real captures are replayed onto the other end; its store is a SQLite file the processes share
(the sensor's namespace reaches no forwarded PostgreSQL).
"""

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from cybermission.db import session_scope
from cybermission.inventory.models import Service as ServiceRow
from cybermission.scans.models import ScanRun, ScanStatus
from tests.conftest import shared_data
from tests.faults.processes import FAST_LEASES, TOKEN, Service, Store, wait_for
from tests.mirror import Listening, Mirror, listening, mirror_link, require_mirror_tools
from tests.timing import scaled

CAPTURES = [("modbus", "mod_17.pcap"), ("s7", "s7_all.pcap")]


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    require_mirror_tools()
    with mirror_link() as link:
        yield link


def _env(store: Store) -> dict[str, str]:
    return {
        "CYBERMISSION_DATABASE_URL": store.url,
        "CYBERMISSION_ADMIN_TOKEN": TOKEN,
        "CYBERMISSION_LOG_LEVEL": "INFO",
        **FAST_LEASES,
    }


def _services(store: Store) -> set[tuple[str, int, str]]:
    with session_scope(store.engine) as session:
        rows = session.exec(select(ServiceRow)).all()
        return {(s.address, s.port, s.protocol) for s in rows}


def _session_run(store: Store) -> ScanRun | None:
    """The one listening run, once it stored what it heard."""
    runs = [r for r in store.runs() if r.targets and r.targets[0].startswith("listen:")]
    return runs[0] if runs and _services(store) else None


def _closed(store: Store, run_id: str) -> ScanRun | None:
    run = store.run(run_id)
    return run if run.finished_at is not None else None


def _heard(store: Store, mirror: Mirror, session: Listening) -> ScanRun:
    """Replay the captures onto the mirror; the session's run once it stored them."""
    mirror.replay([shared_data("pcaps", *parts) for parts in CAPTURES])
    run = wait_for(
        lambda: _session_run(store), timeout_s=scaled(60), what="the session to store services"
    )
    assert run.status is ScanStatus.RUNNING, run
    assert run.owner_pid == session.process.pid  # owned by the listening process itself
    return run


def _killed_session(
    store: Store, mirror: Mirror, tmp_path: Path
) -> tuple[ScanRun, set[tuple[str, int, str]]]:
    """A session that stored what it heard, then ``kill -9``: its run as left behind, and the
    services stored."""
    workdir = tmp_path / "killed"
    workdir.mkdir()
    options = ("--flush-every", "0.5")
    with listening(mirror, _env(store), workdir, *options) as session:
        run = _heard(store, mirror, session)
        session.process.send_signal(signal.SIGKILL)
        session.process.wait(timeout=scaled(30))
    left = store.run(run.id)
    # Nobody has looked yet: the run is as the dead process left it (before the fix, for ever).
    assert left.status is ScanStatus.RUNNING
    assert left.finished_at is None
    return left, set(_services(store))


def test_a_killed_listen_session_is_closed_by_the_next_listen_which_works(
    sqlite_store: Store, mirror: Mirror, tmp_path: Path
) -> None:
    killed, stored = _killed_session(sqlite_store, mirror, tmp_path)
    assert stored

    workdir = tmp_path / "next"
    workdir.mkdir()
    with listening(mirror, _env(sqlite_store), workdir, "--format", "json") as session:
        # Closed at the next session's start-up, before it listens.
        closed = wait_for(
            lambda: _closed(sqlite_store, killed.id),
            timeout_s=scaled(30),
            what="the killed session's run to be closed",
        )
        mirror.replay([shared_data("pcaps", *parts) for parts in CAPTURES])
        stdout, stderr = session.stop()
    assert session.process.returncode == 0, stderr
    assert closed.status is ScanStatus.INTERRUPTED
    assert closed.reason is not None
    assert "owner process" in closed.reason, closed.reason
    assert f":{killed.owner_pid} is gone" in closed.reason
    report = json.loads(stdout)
    assert report["scan"]["id"] != killed.id
    assert report["scan"]["status"] == "succeeded", report["scan"]
    assert report["capture"]["packets"] > 0
    assert report["scan"]["hosts_probed"] > 0
    # What the killed session stored stayed.
    assert _services(sqlite_store) >= stored


def test_a_killed_or_frozen_listen_session_is_closed_by_the_service_reaper(
    sqlite_store: Store, mirror: Mirror, tmp_path: Path, free_port: int
) -> None:
    service = Service(sqlite_store, free_port, tmp_path / "serve.log", env=FAST_LEASES).start()
    try:
        killed, _ = _killed_session(sqlite_store, mirror, tmp_path)
        closed = wait_for(
            lambda: _closed(sqlite_store, killed.id),
            timeout_s=scaled(30),
            what="the reaper to close the killed session's run",
        )
        assert closed.status is ScanStatus.INTERRUPTED
        assert closed.reason is not None
        assert "owner process" in closed.reason, closed.reason

        # Frozen (alive, silent): its lease lapses and the reaper closes it; thawed, the
        # session learns at its next heartbeat that the run is no longer its own, and stops.
        workdir = tmp_path / "frozen"
        workdir.mkdir()
        with listening(mirror, _env(sqlite_store), workdir, "--format", "json") as session:
            frozen = wait_for(
                lambda: next(
                    (r for r in sqlite_store.runs() if r.finished_at is None and r.owner_pid),
                    None,
                ),
                timeout_s=scaled(30),
                what="the second session's run",
            )
            os.kill(session.process.pid, signal.SIGSTOP)
            try:
                lapsed = wait_for(
                    lambda: _closed(sqlite_store, frozen.id),
                    timeout_s=scaled(60),
                    what="the frozen session's lease to lapse",
                )
            finally:
                os.kill(session.process.pid, signal.SIGCONT)
            code = session.process.wait(timeout=scaled(60))
        assert lapsed.status is ScanStatus.INTERRUPTED
        assert lapsed.reason is not None
        assert "no heartbeat" in lapsed.reason, lapsed.reason
        assert code == 0, session.stderr.read_text()
        assert json.loads(session.stdout.read_text())["scan"]["status"] == "interrupted"
        assert sqlite_store.run(frozen.id).reason == lapsed.reason  # the reaper's word stands

        # A live session is cancelled from the API (another process): it stops, `cancelled`.
        workdir = tmp_path / "cancelled"
        workdir.mkdir()
        with listening(mirror, _env(sqlite_store), workdir, "--format", "json") as session:
            live = wait_for(
                lambda: next((r for r in sqlite_store.runs() if r.finished_at is None), None),
                timeout_s=scaled(30),
                what="the third session's run",
            )
            with service.client() as client:
                answer = client.post(f"/scans/{live.id}/cancel")
            # Recorded; its owner, the session, stops at its next heartbeat.
            assert answer.status_code == 202, answer.text
            code = session.process.wait(timeout=scaled(60))
        assert code == 0, session.stderr.read_text()
        cancelled = sqlite_store.run(live.id)
        assert cancelled.status is ScanStatus.CANCELLED, cancelled
    finally:
        service.stop()
