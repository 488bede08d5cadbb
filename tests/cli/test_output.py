"""``--format table|json|jsonl`` on every list command: json is one array, jsonl one object a
line, both the same rows; ``assets list|show`` read the inventory a pcap import built."""

import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from cybermission.cli import app
from cybermission.config import load_settings
from cybermission.db import create_db_engine
from cybermission.scans.models import Scope
from cybermission.scans.scopes import build_guard
from tests.cli.stores import store_url
from tests.conftest import shared_data


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CYBERMISSION_DATABASE_URL": store_url(tmp_path / "cli.db")}


def _run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def _both(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    """The rows of ``json`` after checking ``jsonl`` carries the same, one a line."""
    document = json.loads(_run(env, *args, "--format", "json"))
    lines = [json.loads(line) for line in _run(env, *args, "--format", "jsonl").splitlines()]
    assert isinstance(document, list)
    assert document == lines
    return document


@pytest.fixture
def imported(env: dict[str, str]) -> dict[str, str]:
    capture = shared_data("pcaps", "modbus", "mod_17.pcap")
    _run(env, "import", "pcap", str(capture), "--format", "json")
    return env


def test_assets_list_formats_carry_the_same_devices(imported: dict[str, str]) -> None:
    (device,) = _both(imported, "assets", "list")
    assert device["addresses"]
    assert any(p.startswith("modbus/502/") for p in device["protocols"])
    table = _run(imported, "assets", "list")
    assert device["id"] in table


def test_assets_list_filters_by_protocol(imported: dict[str, str]) -> None:
    assert _both(imported, "assets", "list", "--protocol", "bacnet") == []
    assert len(_both(imported, "assets", "list", "--protocol", "modbus")) == 1


def test_assets_show_has_services_with_facts(imported: dict[str, str]) -> None:
    (device,) = _both(imported, "assets", "list")
    shown = json.loads(_run(imported, "assets", "show", device["id"], "--format", "json"))
    assert shown["id"] == device["id"]
    (service,) = shown["services"]
    assert service["facts"]["server_id"] == "Wingpath Limited"
    assert service["transport"] == "tcp"
    one_line = _run(imported, "assets", "show", device["id"], "--format", "jsonl")
    assert json.loads(one_line) == shown
    assert len(one_line.splitlines()) == 1
    assert "Wingpath Limited" in _run(imported, "assets", "show", device["id"])


def test_assets_show_unknown_id_exits_2(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["assets", "show", "nope"], env=env)
    assert result.exit_code == 2


def test_scopes_list_formats_name_the_default_scope(env: dict[str, str]) -> None:
    (scope,) = _both(env, "scopes", "list")
    assert scope["default"] is True
    assert scope["cidrs"] == ["127.0.0.0/8"]


def test_scopes_list_shows_a_scope_stored_before_the_boundary_as_invalid(
    env: dict[str, str],
) -> None:
    _run(env, "scopes", "add", "plant", "127.60.3.0/24")
    engine = create_db_engine(env["CYBERMISSION_DATABASE_URL"])
    try:
        with Session(engine) as session:
            session.add(Scope(name="old-nat64", cidrs=["64:ff9b::/96"]))
            session.flush()
            build_guard(session, load_settings())  # what the next scan's start does
            session.commit()
    finally:
        engine.dispose()
    rows = {row["name"]: row for row in _both(env, "scopes", "list")}
    assert "64:ff9b::/96" in rows["old-nat64"]["invalid"]
    assert rows["plant"]["invalid"] == ""
    assert "old-nat64" in _run(env, "scopes", "list")


def test_zones_list_formats(env: dict[str, str]) -> None:
    _run(env, "sites", "add", "plant-a", "--scope", "127.60.0.0/24")
    _run(env, "zones", "add", "plant-a", "cell-1", "--exposure", "control")
    (zone,) = _both(env, "zones", "list")
    assert (zone["site"], zone["name"]) == ("plant-a", "cell-1")


def test_zones_add_twice_is_the_services_conflict(env: dict[str, str]) -> None:
    _run(env, "sites", "add", "plant-a", "--scope", "127.60.0.0/24")
    _run(env, "zones", "add", "plant-a", "cell-1")
    result = CliRunner().invoke(app, ["zones", "add", "plant-a", "cell-1"], env=env)
    assert result.exit_code != 0
    # The message of sites/service.create_zone, the same the API's 409 carries.
    assert "name: the site already has a zone 'cell-1'" in result.output


def test_tokens_list_formats(env: dict[str, str]) -> None:
    _run(env, "tokens", "create", "--name", "grafana", "--role", "viewer")
    (token,) = _both(env, "tokens", "list")
    assert token["name"] == "grafana"


def test_rules_lint_problems_as_data(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "bad.yaml").write_text("id: bad\ninfo: [\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "lint", str(tmp_path), "--format", "json"], env=env)
    assert result.exit_code == 1
    (problem,) = json.loads(result.stdout)
    assert problem["path"] == str(tmp_path / "bad.yaml")


def test_rules_lint_defaults_to_the_packaged_rules(env: dict[str, str]) -> None:
    assert _both(env, "rules", "lint") == []


def test_probes_table_fits_80_columns(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["probes"], env={**env, "COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert len(lines) < 60  # one row per probe, not one per request


def test_unknown_format_is_refused(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["assets", "list", "--format", "xml"], env=env)
    assert result.exit_code == 2


def test_import_report_jsonl_is_the_json_document_on_one_line(tmp_path: Path) -> None:
    capture = shared_data("pcaps", "modbus", "mod_17.pcap")
    reports = []
    for fmt in ("json", "jsonl"):
        env = {"CYBERMISSION_DATABASE_URL": store_url(tmp_path / f"{fmt}.db")}
        printed = _run(env, "import", "pcap", str(capture), "--format", fmt)
        assert len(printed.splitlines()) == (1 if fmt == "jsonl" else printed.count("\n"))
        reports.append(json.loads(printed))
    indented, one_line = reports
    # Two imports into two stores: the same report but for its ids and times.
    assert one_line.keys() == indented.keys()
    assert [a["addresses"] for a in one_line["assets"]] == [
        a["addresses"] for a in indented["assets"]
    ]
