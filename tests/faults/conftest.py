"""Fixtures of the fault suite: the lab's simulators in their own process, fresh stores (SQLite
and the real PostgreSQL) migrated by the CLI, and free ports for services."""

import socket
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


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(url=f"sqlite:///{tmp_path}/store.db", kind="sqlite")
    yield _migrated(store, tmp_path)
    store.dispose()


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[Store]:
    try:
        context = postgres_store()
        store = context.__enter__()
    except Exception as exc:
        if REQUIRE_POSTGRES:
            raise
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc.__class__.__name__})")
    try:
        yield _migrated(store, tmp_path)
    finally:
        context.__exit__(None, None, None)


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
    lab: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The report of an undisturbed CLI scan of the lab targets, to compare a disturbed one with;
    ``observations`` is the count its run stored."""
    folder = tmp_path_factory.mktemp("undisturbed")
    store = _migrated(Store(url=f"sqlite:///{folder}/store.db", kind="sqlite"), folder)
    log = folder / "scan.log"
    code = run_cli(store, "scan", LAB_TARGETS, "--format", "json", log=log, timeout_s=300)
    assert code == 0, log.read_text()[-2000:]
    report = scan_json(log)
    assert report["scan"]["status"] == "succeeded", report["scan"]["errors"]
    report["observations"] = store.run(report["scan"]["id"]).observations
    store.dispose()
    return report
