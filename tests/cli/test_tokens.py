"""`cybermission tokens create|list|revoke` on a SQLite store; the token then opens the API."""

import json
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from cybermission.auth.service import verify_token
from cybermission.cli import app
from cybermission.db import create_db_engine
from tests.cli.stores import store_url


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = store_url(tmp_path / "cli.db")
    monkeypatch.setenv("CYBERMISSION_DATABASE_URL", url)
    return url


def test_tokens_create_list_revoke(database_url: str) -> None:
    runner = CliRunner()
    created = runner.invoke(
        app, ["tokens", "create", "--name", "grafana", "--role", "integration", "--format", "json"]
    )
    assert created.exit_code == 0, created.output
    token = json.loads(created.stdout)
    assert token["role"] == "integration"
    engine = create_db_engine(database_url)
    with Session(engine) as session:
        assert verify_token(session, token["token"]) is not None

    listed = runner.invoke(app, ["tokens", "list", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert [t["id"] for t in json.loads(listed.stdout)] == [token["id"]]
    assert token["token"] not in listed.stdout

    revoked = runner.invoke(app, ["tokens", "revoke", token["id"]])
    assert revoked.exit_code == 0, revoked.output
    with Session(engine) as session:
        assert verify_token(session, token["token"]) is None
    engine.dispose()


def test_tokens_revoke_unknown_exits_2(database_url: str) -> None:
    result = CliRunner().invoke(app, ["tokens", "revoke", "nope"])
    assert result.exit_code == 2
    assert "no token" in result.output
