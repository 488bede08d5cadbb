"""PostgreSQL connections that cannot hang: libpq keepalives and timeouts on every connection, and
the deadline of a unit of store work giving up a connection that stopped answering (its pre-ping
included), on the real PostgreSQL through a relay that stops forwarding without a reset."""

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cybermission.config import RunSettings, StoreSettings, load_settings
from cybermission.db import create_db_engine
from cybermission.scans.ownership import cancel_unowned, reap_before_starting
from cybermission.scans.reaper import RunReaper
from cybermission.scans.resume import reopen_run
from cybermission.sensors.ingestion import Ingestion
from cybermission.sensors.traffic_ingestion import TrafficIngestion
from cybermission.store_faults import is_transient
from cybermission.store_links import connect_args, store_deadline
from tests.conftest import POSTGRES_ADMIN_URL, REQUIRE_POSTGRES
from tests.faults.proxy import TcpRelay
from tests.timing import scaled

pytestmark = pytest.mark.postgres

QUICK = StoreSettings(stall_s=1.0, connect_timeout_s=2)


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
