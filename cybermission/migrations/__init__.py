"""Alembic migrations of the store: applied with :func:`upgrade_database`, checked cheaply.

Alembic is imported only to migrate: a command that just needs the store at head compares the
store's ``alembic_version`` rows (:func:`store_revisions`, one query) with the heads read from the
scripts' headers (:func:`script_revisions`).
"""

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ScriptRevisions:
    """Every revision of the migration scripts, and the heads (the revisions none follows)."""

    known: frozenset[str]
    heads: frozenset[str]


def alembic_config(database_url: str) -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(engine: Engine, revision: str = "heads") -> None:
    """Bring the store to ``revision`` on the given engine's connection.

    "heads": domains add their tables on their own branches from the first revision, and every
    branch is applied.
    """
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@cache
def script_revisions() -> ScriptRevisions:
    """The revisions in ``versions/``, from each script's ``revision`` and ``down_revision``."""
    known: set[str] = set()
    followed: set[str] = set()
    for script in sorted((HERE / "versions").glob("*.py")):
        # Only the header is parsed: the identifiers come before the first function. Parsing
        # whole scripts (their upgrade and downgrade) cost ten times as much, 40 ms of CPU idle
        # and 100 ms loaded on every command that opens the store (issue 12).
        text = script.read_text(encoding="utf-8").split("\ndef ", 1)[0]
        header = {
            target.id: ast.literal_eval(node.value)
            for node in ast.parse(text).body
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision")
        }
        known.add(header["revision"])
        down = header.get("down_revision")
        # A merge revision follows several: Alembic writes them as a tuple.
        followed.update([down] if isinstance(down, str) else down or ())
    return ScriptRevisions(known=frozenset(known), heads=frozenset(known - followed))


def store_revisions(engine: Engine) -> frozenset[str]:
    """The revisions the store is at (its ``alembic_version`` rows); empty before any migration."""
    with engine.connect() as connection:
        try:
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            return frozenset(rows.scalars())
        except DBAPIError:
            # The common case costs one query; only a failed one asks whether the table exists.
            connection.rollback()
            if inspect(connection).has_table("alembic_version"):
                raise
            return frozenset()
