"""Fixtures of the fault suite: the lab's simulators in their own process, fresh stores (SQLite
and the real PostgreSQL: copies of a store the CLI migrated), and free ports for services."""

import contextlib
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_POSTGRES
from tests.faults.processes import (
    LAB_BASE,
    LAB_TARGETS,
    Store,
    lab_process,
    postgres_store,
    run_cli,
    scan_json,
)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    """Every simulator of ``cybermission lab`` on 127.60.0.x, one process for the whole suite."""
    with lab_process(LAB_BASE, tmp_path_factory.mktemp("lab") / "lab.json") as devices:
        yield devices


def _migrated(store: Store, tmp_path: Path) -> Store:
    assert run_cli(store, "db", "upgrade", log=tmp_path / "upgrade.log") == 0, (
        tmp_path / "upgrade.log"
    ).read_text()
    return store


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store the CLI migrated, once per worker; each test's store is a copy of the file
    (the migration costs a process start and 3 s of CPU: 10-20 s a test under load)."""
    folder = tmp_path_factory.mktemp("sqlite-template")
    store = _migrated(Store(url=f"sqlite:///{folder}/store.db", kind="sqlite"), folder)
    store.dispose()
    with contextlib.closing(sqlite3.connect(folder / "store.db")) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file
    return folder / "store.db"


@pytest.fixture
def sqlite_store(sqlite_template: Path, tmp_path: Path) -> Iterator[Store]:
    shutil.copyfile(sqlite_template, tmp_path / "store.db")
    store = Store(url=f"sqlite:///{tmp_path}/store.db", kind="sqlite")
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def pg_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of a PostgreSQL database the CLI migrated, once per worker; each test's store is
    a copy of it (``CREATE DATABASE ... TEMPLATE``). Nothing stays connected to it."""
    try:
        context = postgres_store()
        store = context.__enter__()
    except Exception as exc:
        if REQUIRE_POSTGRES:
            raise
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc.__class__.__name__})")
    try:
        _migrated(store, tmp_path_factory.mktemp("pg-template"))
        store.dispose()
        yield store.url.rsplit("/", 1)[-1]
    finally:
        context.__exit__(None, None, None)


@pytest.fixture
def pg_store(pg_template: str) -> Iterator[Store]:
    with postgres_store(template=pg_template) as store:
        yield store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Store:
    """The store on SQLite, then on the real PostgreSQL."""
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    value: Store = request.getfixturevalue(name)
    return value


@pytest.fixture
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def undisturbed(
    lab: list[dict[str, Any]], sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The report of an undisturbed CLI scan of the lab targets, to compare a disturbed one with;
    ``observations`` is the count its run stored."""
    folder = tmp_path_factory.mktemp("undisturbed")
    shutil.copyfile(sqlite_template, folder / "store.db")
    store = Store(url=f"sqlite:///{folder}/store.db", kind="sqlite")
    log = folder / "scan.log"
    code = run_cli(store, "scan", LAB_TARGETS, "--format", "json", log=log, timeout_s=300)
    assert code == 0, log.read_text()[-2000:]
    report = scan_json(log)
    assert report["scan"]["status"] == "succeeded", report["scan"]["errors"]
    report["observations"] = store.run(report["scan"]["id"]).observations
    store.dispose()
    return report
