"""The start-up path of every command: a light ``--help``, and the store's revision checked, not
migrated, except by ``db upgrade`` and on the embedded default store; another missing store is an
error."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from cybermission import migrations
from cybermission.cli import app
from cybermission.config import packaged_rules_dir
from cybermission.db import create_db_engine
from cybermission.migrations import script_revisions, store_revisions, upgrade_database
from tests.conftest import _postgres_engine

# What a command needs only once it runs: the store, the API, the broker, the scan path, packets.
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "fastapi", "uvicorn", "celery", "kombu", "scapy")
HEAVY_OURS = ("api", "scanners", "cybermission.sensors", "cybermission.scans", "cybermission.db")
# The budget of issue 9: `cybermission --help` imports at most 250 modules.
MAX_HELP_MODULES = 250


def _imported_by(*args: str) -> list[str]:
    """The modules ``cybermission ARGS`` imports, in the order ``python -X importtime`` lists."""
    code = (
        "import sys; from cybermission.cli import main; "
        f"sys.argv = ['cybermission', *{list(args)!r}]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return [line.rsplit("|", 1)[-1].strip() for line in lines[1:]]  # the first is the header


@pytest.mark.parametrize("args", [("--help",), ("scan", "--help"), ("findings", "list", "--help")])
def test_help_imports_no_store_api_or_broker_code(args: tuple[str, ...]) -> None:
    modules = _imported_by(*args)
    heavy = [m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY_OURS)]
    assert heavy == []
    assert len(modules) <= MAX_HELP_MODULES


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An existing store with no schema yet, on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path}/store.db")
        with engine.connect():  # the file exists from here on
            pass
        yield engine
        engine.dispose()
        return
    yield from _postgres_engine()


def _run(engine: Engine, *args: str) -> tuple[int, str]:
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(app, list(args), env={"CYBERMISSION_DATABASE_URL": url})
    return result.exit_code, result.output


def test_command_on_a_store_behind_exits_2_and_leaves_it(store: Engine) -> None:
    upgrade_database(store, "0001")
    code, output = _run(store, "scopes", "list")
    assert code == 2
    assert "cybermission db upgrade" in output
    assert store_revisions(store) == {"0001"}


def test_command_on_a_store_with_no_schema_exits_2(store: Engine) -> None:
    code, output = _run(store, "tokens", "list", "--format", "json")
    assert code == 2
    assert "no schema yet" in output
    assert "cybermission db upgrade" in output


def test_db_upgrade_brings_a_store_behind_to_head(store: Engine) -> None:
    upgrade_database(store, "0001")
    code, output = _run(store, "db", "upgrade")
    assert code == 0, output
    assert store_revisions(store) == script_revisions().heads
    code, output = _run(store, "tokens", "list", "--format", "json")
    assert code == 0, output
    assert json.loads(output) == []


def test_command_on_a_store_at_head_does_not_migrate(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade_database(store)

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a command migrated a store already at head")

    monkeypatch.setattr(migrations, "upgrade_database", refuse)
    code, output = _run(store, "tokens", "list", "--format", "json")
    assert code == 0, output


def test_command_on_a_store_of_a_newer_version_exits_2(store: Engine) -> None:
    upgrade_database(store)
    with store.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version VALUES ('9999_future')"))
    code, output = _run(store, "scopes", "list")
    assert code == 2
    assert "9999_future" in output
    assert "newer version" in output


def test_command_on_a_missing_sqlite_store_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "var" / "mistyped.db"
    result = CliRunner().invoke(
        app, ["tokens", "list"], env={"CYBERMISSION_DATABASE_URL": f"sqlite:///{missing}"}
    )
    assert result.exit_code == 2
    assert "no store at" in result.output
    assert "db upgrade" in result.output
    assert not missing.exists()


def test_db_upgrade_creates_a_missing_sqlite_store(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path}/var/new.db")
    code, output = _run(engine, "db", "upgrade")
    assert code == 0, output
    assert store_revisions(engine) == script_revisions().heads
    engine.dispose()


def test_first_command_from_an_empty_folder_creates_the_default_store(tmp_path: Path) -> None:
    """The installed command in a folder with no rules/ and no store: the packaged rules are
    found, and the embedded default store (./var/cybermission.db) is created on first use."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CYBERMISSION_")}
    done = subprocess.run(
        [sys.executable, "-m", "cybermission", "rules", "lint", str(packaged_rules_dir())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "cybermission", "scopes", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "var" / "cybermission.db").exists()
