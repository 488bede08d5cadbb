"""Shared fixtures: settings on a temporary SQLite store, and the store on SQLite and PostgreSQL.

Address plan on loopback, so tests never collide (and never leave 127.0.0.0/8):
127.10.0.0/16 discovery, 127.20.0.0/16 scanners, 127.40.0.0/16 api, 127.50.0.0/16 pipeline/cli,
127.60.0.0/15 the fault suite (its lab on 127.60.0.0/24, silent targets on 127.61.0.0/24, a second
lab that a device leaves on 127.61.128.0/24, a resetting device on 127.61.200.1),
127.0.10.0/24 the default lab of `cybermission lab`.
"""

import contextlib
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

from cybermission import models  # noqa: F401  (registers every table)
from cybermission.config import Settings, load_settings
from cybermission.db import create_db_engine
from cybermission.migrations import upgrade_database
from tests.file_order import format_record, longest_files_first, read_record
from tests.timing import scaled

POSTGRES_ADMIN_URL = os.environ.get(
    "CYBERMISSION_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("CYBERMISSION_TEST_REQUIRE_POSTGRES") == "1"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# Hypothesis' per-example deadline is a wall-clock assert: on CI's loaded 2-core machine a 1 ms
# decode waits 500 ms for a core and fails as "flaky". Speed is measured in bench/, never here.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips with a clear message only where the folder is absent."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        if REQUIRE_POSTGRES:  # CI always has ../shared: never skip there
            raise FileNotFoundError(f"{path} is missing; CI must have ../shared/data")
        pytest.skip(f"{path} is absent: the shared ICS data folder is not on this machine")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(database_url=f"sqlite:///{tmp_path}/test.db", rules_dirs=[Path("rules")])


class _Dropper:
    """Drops test databases in a thread of its own: a DROP DATABASE took 0.4-1.5 s under load,
    and the next test need not wait for it. ``wait`` (at the session's end) waits for every drop
    and returns the errors."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def drop(self, name: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="drop-db", daemon=True)
                self._thread.start()
        self._queue.put(name)

    def _run(self) -> None:
        admin = create_db_engine(POSTGRES_ADMIN_URL)
        while True:
            name = self._queue.get()
            try:
                with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # reported by the session's end (``wait``)
                self.errors.append(f"DROP DATABASE {name}: {exc!r}")
            finally:
                self._queue.task_done()

    def wait(self, timeout_s: float) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._queue.unfinished_tasks:
            self.errors.append(f"{self._queue.unfinished_tasks} databases not dropped in time")
        return self.errors


_DROPPER = _Dropper()


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's caches (the advisory index kept on disk) in a folder of the session's, never
    the user's ~/.cache; commands the tests start inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _databases_dropped() -> Iterator[None]:
    """The session ends once every test database is dropped, and fails if one could not be."""
    yield
    errors = _DROPPER.wait(timeout_s=scaled(120))
    assert not errors, errors


def _postgres_engine(template: str | None = None, *, drop_now: bool = False) -> Iterator[Engine]:
    """A database of its own on the real PostgreSQL: empty, or a copy of ``template`` (a
    database nothing is connected to), dropped afterwards: in the background (``_Dropper``)
    unless ``drop_now``."""
    admin = create_db_engine(POSTGRES_ADMIN_URL)
    name = f"cm_test_{uuid.uuid4().hex[:12]}"
    copy_of = f' TEMPLATE "{template}"' if template is not None else ""
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    except Exception as exc:
        admin.dispose()
        if REQUIRE_POSTGRES or template is not None:
            raise
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc.__class__.__name__})")
    engine = create_db_engine(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        if drop_now:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            _DROPPER.drop(name)
        admin.dispose()


def postgres_template(prepare: Callable[[Engine], None]) -> Iterator[str]:
    """For a session fixture: the name of a database ``prepare`` filled, made once per worker and
    dropped at the end. Each test's store is a copy (``CREATE DATABASE ... TEMPLATE``): measured
    under load, a copy takes 2-2.8 s where an empty database and create_all took 1-2.5 + 4.8 s."""
    for engine in _postgres_engine(drop_now=True):
        prepare(engine)
        engine.dispose()  # nothing may stay connected to a template
        assert engine.url.database is not None
        yield engine.url.database


def sqlite_template(path: Path, prepare: Callable[[Engine], None]) -> Path:
    """A SQLite store at ``path`` that ``prepare`` filled, every page in the file (a test's store
    is a copy of the file: create_all costs 0.2-0.4 s a test)."""
    engine = create_db_engine(f"sqlite:///{path}")
    prepare(engine)
    engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _create_all(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)


@pytest.fixture(scope="session")
def postgres_tables_template() -> Iterator[str]:
    """A PostgreSQL database with every table (create_all), once per worker."""
    yield from postgres_template(_create_all)


@pytest.fixture(scope="session")
def sqlite_tables_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store with every table (create_all), once per worker."""
    return sqlite_template(tmp_path_factory.mktemp("tables-template") / "store.db", _create_all)


@pytest.fixture(scope="session")
def migrated_postgres_template() -> Iterator[str]:
    """A PostgreSQL database the migrations built (as ``serve`` and ``central`` expect a store, not
    create_all), once per worker."""
    yield from postgres_template(upgrade_database)


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store the migrations built, once per worker."""
    return sqlite_template(
        tmp_path_factory.mktemp("migrated-template") / "store.db", upgrade_database
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A store with no table yet (migrations build it), on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path}/migrated.db")
        yield engine
        engine.dispose()
        return
    yield from _postgres_engine()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty store with every table, on SQLite and on the real PostgreSQL: a copy of the
    worker's template store (create_all once per worker, not per test)."""
    if request.param == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_tables_template"), tmp_path / "store.db")
        eng = create_db_engine(f"sqlite:///{tmp_path}/store.db")
        yield eng
        eng.dispose()
        return
    yield from _postgres_engine(template=request.getfixturevalue("postgres_tables_template"))


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = create_db_engine(f"sqlite:///{tmp_path}/store.db")
    SQLModel.metadata.create_all(eng)
    yield eng
    eng.dispose()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-file-durations",
        metavar="PATH",
        help="write the seconds each test file took to PATH (tests/file_order.py reads it)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Longest files first: see tests/file_order.py (every worker sorts alike: xdist checks it).
    items[:] = longest_files_first(items, read_record())


_durations: list[tuple[str, float]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations.append((report.nodeid, report.duration))  # setup, call and teardown alike


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--record-file-durations")
    # Only the process that saw every report writes: xdist's controller, or a run without xdist.
    if path and not hasattr(session.config, "workerinput"):
        Path(path).write_text(format_record(_durations))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Commands run in-process (CliRunner) point the root logger at the runner's stream: put it
    back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
