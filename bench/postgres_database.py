"""A PostgreSQL database made for one bench run and dropped after it, whatever ends the run."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

from cybermission.db import create_db_engine


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[Engine]:
    """An empty database beside ``admin_url``'s (a fresh name each time), dropped at the end.

    ``WITH (FORCE)``: a bench stopped mid-run may leave sessions open; the database goes anyway.
    """
    admin = create_db_engine(admin_url)
    name = f"cm_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_db_engine(admin_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def kept_database(admin_url: str, name: str) -> Engine:
    """The database ``name`` beside ``admin_url``'s, created (empty) when it does not exist yet.

    For a benchmark that keeps what it filled between runs; the caller drops it when done.
    """
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"--database {name!r}: letters, digits and _ only")
    admin = create_db_engine(admin_url)
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if found is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return create_db_engine(admin_url.rsplit("/", 1)[0] + f"/{name}")
