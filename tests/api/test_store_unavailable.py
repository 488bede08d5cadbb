"""A store that fails or stops answering ends a request in a 503 problem that names it, within
the store's deadline, with nothing half-written (api/request_deadline.py, api/errors.py).

Real faults only: a PostgreSQL table locked by another session (the request's query waits on
it), a link to PostgreSQL that stops forwarding (tests/faults/proxy.py), a SQLite file another
connection holds the write lock of. Before, the first two waited for ever and the third was a
bare 500.
"""

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine, func, text
from sqlmodel import select

from api.app import create_app
from cybermission.config import Settings, StoreSettings
from cybermission.db import create_db_engine, session_scope
from cybermission.scans.models import ScanRun
from tests.api.conftest import AUTH, TOKEN, served
from tests.conftest import _postgres_engine
from tests.faults.proxy import TcpRelay
from tests.timing import scaled

QUICK = StoreSettings(stall_s=1.0, connect_timeout_s=2)
# The deadline, the pool's reconnection attempts (each cut at once past the deadline), room for
# a loaded machine: a request still waiting past this waits on the store for ever.
BOUND_S = scaled(3 * (QUICK.stall_s + QUICK.connect_timeout_s))
SCAN = {"targets": ["127.0.0.1"], "ports": [502]}


def _app(settings: Settings, engine: Engine) -> FastAPI:
    return create_app(
        settings.model_copy(update={"admin_token": SecretStr(TOKEN), "store": QUICK}),
        engine=engine,
    )


def _runs(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(ScanRun)).one()


def _assert_store_unavailable(response: httpx.Response, store: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    problem = response.json()
    assert problem["type"] == "urn:cybermission:problem:store-unavailable"
    assert f"the store ({store})" in problem["detail"]


async def _request(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    async with served(app, AUTH) as client:
        return await asyncio.wait_for(client.request(method, path, **kwargs), BOUND_S)  # type: ignore[arg-type]


@pytest.fixture
def relay() -> Iterator[TcpRelay]:
    with TcpRelay(("127.0.0.1", 5432)) as link:
        yield link


@pytest.fixture
def postgres(migrated_postgres_template: str) -> Iterator[Engine]:
    """A migrated database of the test's own on the real PostgreSQL, reached directly."""
    yield from _postgres_engine(template=migrated_postgres_template)


@pytest.fixture
def relayed(postgres: Engine, relay: TcpRelay) -> Iterator[Engine]:
    """The same database through the relay, with the quick stall deadline."""
    url = postgres.url.render_as_string(hide_password=False)
    engine = create_db_engine(url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}"), QUICK)
    yield engine
    engine.dispose()


@pytest.mark.postgres
async def test_a_scan_waiting_on_a_locked_table_is_a_503_and_stores_nothing(
    settings: Settings, postgres: Engine, relayed: Engine
) -> None:
    with postgres.connect() as holder:
        holder.execute(text("LOCK TABLE scan_run IN ACCESS EXCLUSIVE MODE"))
        try:
            response = await _request(_app(settings, relayed), "POST", "/api/v1/scans", json=SCAN)
        finally:
            holder.rollback()
    _assert_store_unavailable(response, "PostgreSQL")
    assert _runs(postgres) == 0


@pytest.mark.postgres
async def test_a_store_gone_silent_is_a_503_within_the_deadline(
    settings: Settings, relayed: Engine, relay: TcpRelay
) -> None:
    app = _app(settings, relayed)
    async with served(app, AUTH) as client:
        assert (await client.get("/api/v1/scans")).status_code == 200  # a pooled connection
        relay.stall()
        try:
            response = await asyncio.wait_for(client.get("/api/v1/scans"), BOUND_S)
        finally:
            relay.cut()  # without the deadline, the request's thread waits until this
    _assert_store_unavailable(response, "PostgreSQL")


async def test_a_scan_on_a_locked_sqlite_file_is_a_503_and_stores_nothing(
    settings: Settings, tmp_path: Path, migrated_sqlite_template: Path
) -> None:
    path = tmp_path / "locked.db"
    shutil.copyfile(migrated_sqlite_template, path)
    engine = create_db_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer: ours waits its busy timeout out
        response = await _request(_app(settings, engine), "POST", "/api/v1/scans", json=SCAN)
    finally:
        with contextlib.suppress(sqlite3.Error):
            holder.execute("ROLLBACK")
        holder.close()
    _assert_store_unavailable(response, "SQLite")
    assert _runs(engine) == 0
    engine.dispose()
