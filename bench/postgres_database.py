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
