"""Stores for commands under test: a SQLite URL other than the default must exist (db upgrade)."""

from pathlib import Path

from cybermission.db import create_db_engine
from cybermission.migrations import upgrade_database


def store_url(path: Path) -> str:
    """The URL of a migrated SQLite store at ``path``, created as ``db upgrade`` would if absent."""
    url = f"sqlite:///{path}"
    if not path.exists():
        engine = create_db_engine(url)
        upgrade_database(engine)
        engine.dispose()
    return url
