"""PostgreSQL connections that cannot hang: libpq keepalives and timeouts on every connection, and
the deadline of a unit of store work giving up a connection that stopped answering (its pre-ping
included), on the real PostgreSQL through a relay that stops forwarding without a reset."""

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select
from typer.testing import CliRunner, Result

from cybermission import db
from cybermission.cli import app
from cybermission.config import RunSettings, StoreSettings, load_settings
from cybermission.db import create_db_engine, session_scope, utcnow
from cybermission.locks import ProcessLock
from cybermission.scans import ownership, runner
from cybermission.scans.listening import PassiveRecorder
from cybermission.scans.models import ScanRun, ScanStatus, ScopeBase
from cybermission.scans.ownership import (
    RunOwner,
    cancel_unowned,
    claim_run,
    reap_before_starting,
)
from cybermission.scans.reaper import RunReaper
from cybermission.scans.resume import reopen_run
from cybermission.scans.scheduler import ScheduleRunner
from cybermission.scans.schedules import ScheduleBase, create_schedule, ticks
from cybermission.scans.scopes import create_scope
from cybermission.sensors.ingestion import Ingestion
from cybermission.sensors.traffic_ingestion import TrafficIngestion
from cybermission.store_faults import is_transient
from cybermission.store_links import connect_args, store_deadline
from tests.conftest import POSTGRES_ADMIN_URL, REQUIRE_POSTGRES, _postgres_engine
from tests.faults.proxy import TcpRelay
from tests.timing import scaled

pytestmark = pytest.mark.postgres

QUICK = StoreSettings(stall_s=1.0, connect_timeout_s=2)
# Far beyond any test's wait: a deadline that must not be the one that fires.
LONG = StoreSettings(stall_s=600.0, connect_timeout_s=2)


@pytest.fixture
def relay() -> Iterator[TcpRelay]:
    with TcpRelay(("127.0.0.1", 5432)) as link:
        yield link


@pytest.fixture
def through(relay: TcpRelay) -> Iterator[Engine]:
    """An engine on the real PostgreSQL through the relay, its pool holding one used
    connection (so the next checkout pre-pings it)."""
    url = POSTGRES_ADMIN_URL.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    engine = create_db_engine(url, QUICK)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        if REQUIRE_POSTGRES:
            raise
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc.__class__.__name__})")
    yield engine
    engine.dispose()


def _in_thread(engine: Engine, *, bounded: bool) -> tuple[threading.Thread, list[BaseException]]:
    """``SELECT 1`` in a thread of its own (with or without the deadline); the errors it met."""
    errors: list[BaseException] = []

    def query() -> None:
        try:
            if bounded:
                with store_deadline(engine, "a test query"), engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            else:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=query, daemon=True)
    thread.start()
    return thread, errors


def test_a_stalled_connection_fails_as_a_lost_one_within_the_deadline(
    relay: TcpRelay, through: Engine
) -> None:
    relay.stall()
    # The pooled connection's pre-ping gets no answer, nor does a new connection's start-up.
    thread, errors = _in_thread(through, bounded=True)
    thread.join(timeout=scaled(30))
    assert not thread.is_alive(), "the query still waits on a connection that does not answer"
    assert len(errors) == 1
    assert is_transient(errors[0]), errors[0]  # retried, then spooled, as a lost connection


def test_without_a_deadline_a_stalled_connection_is_still_waiting(
    relay: TcpRelay, through: Engine
) -> None:
    """What the deadline is for (this shows the relay really stalls): the same query unbounded
    is still waiting after the time the bounded one needed many times over."""
    relay.stall()
    thread, errors = _in_thread(through, bounded=False)
    thread.join(timeout=10 * QUICK.stall_s)
    assert thread.is_alive()
    assert errors == []
    relay.cut()  # the relay resets it: the thread ends
    thread.join(timeout=scaled(30))


def test_units_of_work_share_one_watchdog_thread(through: Engine) -> None:
    """Deadlines open at once (an API's concurrent requests, a run's batches and heartbeats) are
    watched by one thread of the process, not one timer thread each."""
    before = {thread.ident for thread in threading.enumerate()}
    with contextlib.ExitStack() as units:
        for number in range(20):
            units.enter_context(store_deadline(through, f"unit {number}"))
        started = [t for t in threading.enumerate() if t.ident not in before]
    assert len(started) <= 1, [thread.name for thread in started]


def test_a_sooner_deadline_is_not_held_behind_a_later_one(relay: TcpRelay, through: Engine) -> None:
    """The watchdog sleeps until the soonest deadline: a unit of a short deadline opened while it
    sleeps for a long one (another engine's) still gives a stalled connection up in time."""
    patient = create_db_engine(through.url.render_as_string(hide_password=False), LONG)
    try:
        with store_deadline(patient, "a long unit"):
            relay.stall()
            thread, errors = _in_thread(through, bounded=True)
            thread.join(timeout=scaled(30))
            assert not thread.is_alive(), "the short deadline waited behind the long one"
        assert len(errors) == 1
        assert is_transient(errors[0]), errors[0]
    finally:
        patient.dispose()


def test_postgres_connections_carry_keepalives_and_timeouts(through: Engine) -> None:
    with through.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        options = raw.info.get_parameters()  # type: ignore[attr-defined]
    expected = {key: str(value) for key, value in connect_args(QUICK).items()}
    assert {key: options.get(key) for key in expected} == expected
    assert expected["tcp_user_timeout"] == "30000"
    assert expected["keepalives"] == "1"


def test_a_pinged_connection_is_handed_over_idle(through: Engine) -> None:
    """The pre-ping leaves no transaction open: a pooled connection can still be switched to
    autocommit (CREATE DATABASE needs it)."""
    with through.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1


def _units(tmp_path: Path) -> dict[str, Callable[[Engine], object]]:
    """Store work outside a run's batches: each must give a silent store up (issue 12)."""
    settings = load_settings(database_url=f"sqlite:///{tmp_path}/unused.db")
    # One attempt: the retry horizon ends before the first back-off.
    once = RunSettings(store_retry_s=0.01)
    return {
        "start-up reaping": lambda engine: reap_before_starting(engine, once),
        "serve's reaper": lambda engine: RunReaper(engine, once).reap_once(),
        "resume's reads": lambda engine: reopen_run(engine, "run-1", by="cli", lease_s=90.0),
        "cancel's reads": lambda engine: cancel_unowned(engine, "run-1", by="cli", lease_s=90.0),
        "sensor results": lambda engine: Ingestion(engine, settings).apply(
            site_id="site-1", part={"version": 1}
        ),
        "sensor traffic": lambda engine: TrafficIngestion(engine, settings).apply(
            site_id="site-1", batch={"version": 1}
        ),
    }


@pytest.mark.parametrize(
    "unit",
    [
        "start-up reaping",
        "serve's reaper",
        "resume's reads",
        "cancel's reads",
        "sensor results",
        "sensor traffic",
    ],
)
def test_store_work_beside_runs_ends_when_the_store_stalls(
    relay: TcpRelay, through: Engine, tmp_path: Path, unit: str
) -> None:
    """Reaping at start-up and in ``serve``, resuming, cancelling, a site sensor's ingest: a
    store gone silent ends each in a lost connection (the reaper logs it and returns nothing),
    never a hang."""
    work = _units(tmp_path)[unit]
    relay.stall()
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(work(through))
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=scaled(30))
    assert not thread.is_alive(), f"{unit} still waits on a store that does not answer"
    (result,) = outcome
    if unit == "serve's reaper":
        assert result == []  # logged; the next pass tries again
    else:
        assert isinstance(result, BaseException), result
        assert is_transient(result), result


# The scan path's own store calls (issue 12's deadlines): creating a run, cancelling one and
# waiting for it to end, the service runner recording a run's end, the scheduler's tick. Each
# is reached with a pooled connection through the relay, which stalls as the unit starts: its
# checkout's pre-ping then gets no answer. Bounded: the deadline, then the pool's one reconnection
# attempt (connect_timeout_s), for one attempt of the unit (a retry window shorter than a
# back-off), with room for a loaded machine.
ONE_UNIT_S = QUICK.stall_s + QUICK.connect_timeout_s
BOUND_S = scaled(3 * ONE_UNIT_S)
QUICK_ENV = {
    "CYBERMISSION_STORE__STALL_S": str(QUICK.stall_s),
    "CYBERMISSION_STORE__CONNECT_TIMEOUT_S": str(QUICK.connect_timeout_s),
    "CYBERMISSION_RUNS__STORE_RETRY_S": "0.01",
    "CYBERMISSION_LOG_LEVEL": "WARNING",
}


@pytest.fixture
def migrated_url(relay: TcpRelay, migrated_postgres_template: str) -> Iterator[str]:
    """The URL, through the relay, of a database the migrations built (a copy of the template)."""
    for direct in _postgres_engine(template=migrated_postgres_template):
        url = direct.url.render_as_string(hide_password=False)
        yield url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")


@pytest.fixture
def migrated(migrated_url: str) -> Iterator[Engine]:
    """An engine on ``migrated_url`` with the stall deadline, one used connection in its pool."""
    engine = create_db_engine(migrated_url, QUICK)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    yield engine
    engine.dispose()


class _StallOnEntry:
    """``session_scope`` that stalls the relay as the ``nth`` unit of store work begins (the
    store stops answering right there), and is the real one otherwise."""

    def __init__(self, relay: TcpRelay, nth: int) -> None:
        self.relay, self.nth, self.entered = relay, nth, 0

    def __call__(self, engine: Engine) -> AbstractContextManager[Session]:
        self.entered += 1
        if self.entered == self.nth:
            self.relay.stall()
        return session_scope(engine)


def _bounded(work: Callable[[], object], what: str) -> object:
    """``work``'s result or error, from a thread given ``BOUND_S`` (fails the test past it)."""
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=BOUND_S)
    assert not thread.is_alive(), f"{what} still waits on a store that does not answer"
    (result,) = outcome
    return result


def _cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"CYBERMISSION_DATABASE_URL": url, **QUICK_ENV})


@pytest.mark.usefixtures("restore_logging")
def test_cli_scan_ends_when_the_store_stalls_as_it_creates_the_run(
    relay: TcpRelay, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up reaping answered (its connection pooled); the store goes silent as ``create``
    begins: the command says the store failed and exits 1, no run is stored."""
    real_reap = ownership.reap_before_starting

    def reap_then_stall(engine: Engine, runs: RunSettings) -> list[str]:
        reaped = real_reap(engine, runs)
        relay.stall()
        return reaped

    monkeypatch.setattr(ownership, "reap_before_starting", reap_then_stall)
    result = _bounded(
        lambda: _cli(migrated_url, "scan", "127.0.0.1", "--ports", "502", "--udp-ports", "none"),
        "cybermission scan",
    )
    assert isinstance(result, Result), result
    assert result.exit_code == 1, result.output
    assert "the store failed" in result.output
    relay.flow()
    engine = create_db_engine(migrated_url)
    try:
        with session_scope(engine) as session:
            assert session.exec(select(ScanRun)).all() == []
    finally:
        engine.dispose()


def _owned_elsewhere(url: str) -> str:
    """A running run a live process elsewhere owns (fresh heartbeat): cancel waits for it."""
    engine = create_db_engine(url)
    try:
        with session_scope(engine) as session:
            run = ScanRun(targets=["127.50.2.1"], ports=[502], status=ScanStatus.RUNNING)
            claim_run(run, RunOwner(instance="elsewhere-1", host="elsewhere", pid=7))
            session.add(run)
            session.flush()
            return run.id
    finally:
        engine.dispose()


@pytest.mark.parametrize(("unit", "nth"), [("its read of the run", 1), ("its wait", 2)])
@pytest.mark.usefixtures("restore_logging")
def test_cli_scans_cancel_ends_when_the_store_stalls(
    relay: TcpRelay, migrated_url: str, monkeypatch: pytest.MonkeyPatch, unit: str, nth: int
) -> None:
    """The store goes silent as ``scans cancel`` reads the run, or as it polls for the run's end
    (the request recorded, the owner alive elsewhere; it would wait 10 minutes): it says the
    store failed and exits 1."""
    run_id = _owned_elsewhere(migrated_url)
    # The command's own units (cancel_unowned's are store_links-bounded already).
    monkeypatch.setattr(db, "session_scope", _StallOnEntry(relay, nth))
    result = _bounded(
        lambda: _cli(migrated_url, "scans", "cancel", run_id, "--wait-s", "600"),
        f"scans cancel ({unit})",
    )
    assert isinstance(result, Result), result
    assert result.exit_code == 1, result.output
    assert "the store failed" in result.output
    assert ("waiting for its owner" in result.output) is (nth == 2)


def test_service_runner_ends_when_the_store_stalls_as_it_records_a_run_s_end(
    relay: TcpRelay,
    migrated_url: str,
    migrated: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run the pipeline could not close (a crash, stood in for here) is ended by the runner;
    the store goes silent then: the task ends, saying the end was not recorded."""
    with session_scope(migrated) as session:
        run = ScanRun(targets=["127.50.2.1"], ports=[502])
        session.add(run)
        session.flush()
        run_id = run.id

    async def crash(**_: object) -> ScanRun:
        relay.stall()
        raise RuntimeError("a bug in the pipeline")

    monkeypatch.setattr(runner, "execute_scan", crash)
    settings = load_settings(database_url=migrated_url, runs=RunSettings(store_retry_s=0.01))

    async def run_it() -> None:
        tasks = runner.ScanTasks(engine=migrated, settings=settings)
        tasks.start(run_id)
        await tasks.wait()

    result = _bounded(lambda: asyncio.run(run_it()), "the runner's end of a run")
    assert result is None
    (record,) = [r for r in caplog.records if r.message == "scan run end not recorded"]
    assert record.scan_run_id == run_id  # type: ignore[attr-defined]
    assert any(
        getattr(r, "work", None) == "record the end of a run"
        and r.message == "store did not answer: connection given up"
        for r in caplog.records
    )


@pytest.mark.parametrize(
    ("unit", "nth"), [("expire risk acceptances", 1), ("list the schedules", 2), ("decide", 3)]
)
def test_scheduler_tick_ends_when_the_store_stalls(
    relay: TcpRelay,
    migrated_url: str,
    migrated: Engine,
    monkeypatch: pytest.MonkeyPatch,
    unit: str,
    nth: int,
) -> None:
    """Reaping answered; the store goes silent as the tick's ``nth`` unit begins: the tick fails
    with a lost connection (the runner logs it and ticks again later), never holds the
    scheduler's one tick thread."""
    settings = load_settings(database_url=migrated_url, runs=RunSettings(store_retry_s=0.01))
    with session_scope(migrated) as session:
        scope = create_scope(session, data=ScopeBase(name="lab", cidrs=["127.24.2.0/24"]))
        create_schedule(
            session,
            data=ScheduleBase(name="hourly", scope_id=scope.id, interval_s=3600, ports=[502]),
            settings=settings,
            actor="alice",
        )
    monkeypatch.setattr(ticks, "session_scope", _StallOnEntry(relay, nth))
    result = _bounded(
        lambda: ticks.tick(migrated, settings=settings, now=utcnow() + timedelta(hours=2)),
        f"the tick ({unit})",
    )
    assert isinstance(result, BaseException), result
    assert is_transient(result), result


def test_scheduler_runner_ends_when_the_store_stalls_as_it_checks_its_lock(
    relay: TcpRelay, migrated_url: str, migrated: Engine
) -> None:
    """The leader re-checks its lock (on the connection that holds it) before every tick; the
    store goes silent between two ticks: the check gives the lock up and taking it again fails
    with a lost connection (the runner logs it, the next tick tries again). Before, the check
    waited for ever and held the one tick thread, and the service's stop behind it."""
    settings = load_settings(database_url=migrated_url, runs=RunSettings(store_retry_s=0.01))
    scheduler = ScheduleRunner(migrated, settings=settings, launch=lambda _: None)
    assert scheduler.tick_once() is not None  # the lock taken, a tick done
    relay.stall()
    result = _bounded(scheduler.tick_once, "the scheduler's lock check")
    assert isinstance(result, BaseException), result
    assert is_transient(result), result
    assert not scheduler.is_leader


def test_releasing_a_process_lock_ends_when_the_store_stalls(
    relay: TcpRelay, migrated: Engine
) -> None:
    """A service stopping releases its lock on the connection that holds it; the store is
    silent: the release gives the connection up (the server frees a lost session's locks)
    instead of holding the service's stop for ever."""
    lock = ProcessLock(migrated, "a-test-lock")
    assert lock.acquire()
    relay.stall()
    assert _bounded(lock.release, "releasing the lock") is None
    assert not lock.held


def test_taking_a_process_lock_ends_when_the_store_stalls(
    relay: TcpRelay, migrated: Engine
) -> None:
    """A follower tries the scheduler's lock at every tick on a pooled connection; the store is
    silent: the attempt fails with a lost connection instead of holding the tick for ever."""
    lock = ProcessLock(migrated, "a-test-lock")
    relay.stall()
    result = _bounded(lock.acquire, "taking the lock")
    assert isinstance(result, BaseException), result
    assert is_transient(result), result
    assert not lock.held


def _listening(engine: Engine, url: str, *, owned: bool = True) -> PassiveRecorder:
    """A ``listen`` session's recorder: its run made (and owned: its lease renewed from a
    thread), one attempt per unit."""
    settings = load_settings(database_url=url, runs=RunSettings(store_retry_s=0.01))
    return PassiveRecorder(
        engine=engine,
        settings=settings,
        source="listen:mirror0",
        requested_by="listen",
        owned=settings.runs if owned else None,
    )


def test_a_listening_session_s_start_ends_when_the_store_stalls(
    relay: TcpRelay, migrated_url: str, migrated: Engine
) -> None:
    """``listen`` makes its run before capturing; the store is silent: a lost connection (the
    command says the store failed), never a wait for ever. Nothing is stored."""
    relay.stall()
    result = _bounded(lambda: _listening(migrated, migrated_url), "a listening session's start")
    assert isinstance(result, BaseException), result
    assert is_transient(result), result
    relay.flow()
    with session_scope(migrated) as session:
        assert session.exec(select(ScanRun)).all() == []


def test_a_listening_session_s_end_ends_when_the_store_stalls(
    relay: TcpRelay, migrated_url: str, migrated: Engine
) -> None:
    """The session stops (Ctrl-C) and the store is silent as it ends the run: a lost connection,
    never a wait for ever; the run stays open for the first process that notices to close.
    (Not owned here: the lease thread's own connection would make the pool's use racy.)"""
    recorder = _listening(migrated, migrated_url, owned=False)
    relay.stall()
    result = _bounded(recorder.finish, "a listening session's end")
    assert isinstance(result, BaseException), result
    assert is_transient(result), result
