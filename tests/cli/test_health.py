"""``cybermission health``: the store and the broker a process needs, for container healthchecks;
against a real SQLite store and the machine's RabbitMQ on loopback."""

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cybermission.cli import app

BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def _health(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["health", *args], env=env)
    return result.exit_code, result.output


def _store(tmp_path: Path) -> dict[str, str]:
    return {"CYBERMISSION_DATABASE_URL": f"sqlite:///{tmp_path}/store.db"}


def test_health_store_migrated_is_healthy(tmp_path: Path) -> None:
    env = _store(tmp_path)
    assert CliRunner().invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    code, output = _health(env)
    assert (code, "store: ok" in output) == (0, True)


def test_health_store_missing_is_unhealthy(tmp_path: Path) -> None:
    code, output = _health(_store(tmp_path))
    assert code == 2
    assert "no store" in output


def test_health_broker_answers(tmp_path: Path) -> None:
    env = _store(tmp_path)
    CliRunner().invoke(app, ["db", "upgrade"], env=env)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 5672)) != 0:
            pytest.skip("RabbitMQ on 127.0.0.1:5672 is not running")
    code, output = _health({**env, "CYBERMISSION_BROKER__URL": BROKER}, "--broker")
    assert code == 0, output
    assert "broker: ok" in output


def test_health_broker_down_is_unhealthy(tmp_path: Path) -> None:
    env = _store(tmp_path)
    CliRunner().invoke(app, ["db", "upgrade"], env=env)
    with socket.socket() as closed:
        closed.bind(("127.41.0.2", 0))
        url = f"amqp://guest:guest@127.41.0.2:{closed.getsockname()[1]}/"
        code, output = _health({**env, "CYBERMISSION_BROKER__URL": url}, "--broker")
    assert code == 2
    assert "broker:" in output
