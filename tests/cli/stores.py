"""Stores for commands under test: a SQLite URL other than the default must exist (db upgrade)."""

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

from cybermission.migrations import upgrade_database
from tests.conftest import sqlite_template


@cache
def _migrated() -> Path:
    """A store the migrations built, once per process (1-3 s of CPU each time it is built)."""
    folder = Path(tempfile.mkdtemp(prefix="cm-migrated-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return sqlite_template(folder / "store.db", upgrade_database)


def store_url(path: Path) -> str:
    """The URL of a migrated SQLite store at ``path``, created as ``db upgrade`` would if absent
    (a copy of a store the migrations built)."""
    url = f"sqlite:///{path}"
    if not path.exists():
        shutil.copyfile(_migrated(), path)
    return url
