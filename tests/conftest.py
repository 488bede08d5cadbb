"""Shared fixtures: settings on a temporary SQLite store, and the store on SQLite and PostgreSQL.

Address plan on loopback, so tests never collide (and never leave 127.0.0.0/8):
127.10.0.0/16 discovery, 127.20.0.0/16 scanners, 127.40.0.0/16 api, 127.50.0.0/16 pipeline/cli,
127.60.0.0/15 the fault suite (its lab on 127.60.0.0/24, silent targets on 127.61.0.0/24, a second
lab that a device leaves on 127.61.128.0/24, a resetting device on 127.61.200.1),
127.0.10.0/24 the default lab of `cybermission lab`.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

from cybermission import models  # noqa: F401  (registers every table)
from cybermission.config import Settings, load_settings
from cybermission.db import create_db_engine
from tests.file_order import format_record, longest_files_first, read_record

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


def _postgres_engine() -> Iterator[Engine]:
    admin = create_db_engine(POSTGRES_ADMIN_URL)
    name = f"cm_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        if REQUIRE_POSTGRES:
            raise
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc.__class__.__name__})")
    engine = create_db_engine(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
    """An empty store with every table, on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        eng = create_db_engine(f"sqlite:///{tmp_path}/store.db")
        SQLModel.metadata.create_all(eng)
        yield eng
        eng.dispose()
        return
    for eng in _postgres_engine():
        SQLModel.metadata.create_all(eng)
        yield eng


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
