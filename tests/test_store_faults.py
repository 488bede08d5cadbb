"""Store errors judged transient or permanent from the real databases' own errors, and retried."""

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from cybermission.db import create_db_engine
from cybermission.store_faults import describe_store_error, is_transient, retry_transient
from tests.timing import scaled


def _error_of(engine: Engine, sql: str) -> SQLAlchemyError:
    with pytest.raises(SQLAlchemyError) as caught, engine.begin() as connection:
        connection.execute(text(sql))
    return caught.value


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE t (v TEXT)")
    return path


def test_sqlite_locked_is_transient_and_retried_until_the_writer_leaves(sqlite_file: Path) -> None:
    holder = sqlite3.connect(sqlite_file, check_same_thread=False, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
    engine = create_db_engine(f"sqlite:///{sqlite_file}")

    def insert() -> None:
        with engine.begin() as connection:
            connection.execute(text("PRAGMA busy_timeout=0"))  # fail at once, not after 10 s
            connection.execute(text("INSERT INTO t VALUES ('x')"))

    try:
        with pytest.raises(SQLAlchemyError) as caught:
            insert()
        assert is_transient(caught.value)
        release = threading.Timer(0.3, holder.rollback)
        release.start()
        retry_transient(insert, horizon_s=scaled(30), what="test insert")
        release.join()
    finally:
        holder.close()
        engine.dispose()
    with sqlite3.connect(sqlite_file) as raw:
        assert raw.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_sqlite_full_is_permanent_and_not_retried(sqlite_file: Path) -> None:
    engine = create_db_engine(f"sqlite:///{sqlite_file}")
    calls = 0

    def fill() -> None:
        nonlocal calls
        calls += 1
        with engine.begin() as connection:
            # SQLITE_FULL from a page limit: the same error a full disk gives.
            pages = connection.execute(text("PRAGMA page_count")).scalar()
            connection.execute(text(f"PRAGMA max_page_count={pages}"))
            connection.execute(text("INSERT INTO t VALUES (zeroblob(1000000))"))

    try:
        with pytest.raises(SQLAlchemyError) as caught:
            retry_transient(fill, horizon_s=scaled(30), what="test fill")
    finally:
        engine.dispose()
    assert calls == 1
    assert not is_transient(caught.value)
    assert "full" in describe_store_error(caught.value)


def test_schema_mismatch_is_permanent(engine: Engine) -> None:
    error = _error_of(engine, "SELECT missing_column FROM scan_run")
    assert not is_transient(error)


@pytest.mark.postgres
def test_postgres_backend_terminated_is_transient_and_retried(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    with engine.connect() as victim:
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(SQLAlchemyError) as caught:
            victim.execute(text("SELECT 1"))
    assert is_transient(caught.value)
    assert (
        retry_transient(lambda: _select_one(engine), horizon_s=scaled(30), what="after terminate")
        == 1
    )


def _select_one(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT 1")).scalar_one())
