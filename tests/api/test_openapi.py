"""The OpenAPI document: valid (openapi-spec-validator), named operations, problem-details errors
that match what the API sends, and a client generated from it (openapi-python-client) that works
against the app served on loopback."""

import importlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import uvicorn
from fastapi import FastAPI
from openapi_spec_validator import validate
from sqlalchemy import Engine

from tests.api.conftest import TOKEN
from tests.api.world import build_world

HOST = "127.40.9.1"
METHODS = {"get", "post", "put", "patch", "delete"}
PROBLEM = "application/problem+json"


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _problem_schema(document: dict[str, Any]) -> dict[str, Any]:
    return {**document["components"]["schemas"]["Problem"], "components": document["components"]}


def test_openapi_document_is_valid(app: FastAPI) -> None:
    validate(app.openapi())


def test_openapi_operation_ids_are_named_and_unique(app: FastAPI) -> None:
    ids = [op["operationId"] for _, _, op in _operations(app.openapi())]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert [i for i in ids if not re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)*", i)] == []
    assert {"getScan", "startScan", "getAssets", "updateFinding", "deleteScope"} <= set(ids)


def test_openapi_errors_are_documented_as_problem_details(app: FastAPI) -> None:
    document = app.openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        expected = {"401", "403", "422"} if path.startswith("/api/v1/") else set()
        if "{" in path:
            expected.add("404")
        assert expected <= set(responses), (method, path)
        for code, response in responses.items():
            if code.startswith("4"):
                schema = response["content"][PROBLEM]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, code)


async def test_openapi_problem_schema_matches_what_is_sent(
    app: FastAPI, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    schema = _problem_schema(app.openapi())
    answers = [
        await anonymous.get("/api/v1/scans"),
        await client.get("/api/v1/scans/no-such-run"),
        await client.post("/api/v1/scans", json={"targets": "not a list"}),
        await client.post("/api/v1/scans/no-such-run/cancel"),
    ]
    assert [a.status_code for a in answers] == [401, 404, 422, 404]
    for answer in answers:
        assert answer.headers["content-type"] == PROBLEM
        jsonschema.validate(answer.json(), schema)
    assert answers[2].json()["errors"][0]["field"] == "targets"


@pytest.fixture
def served(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn on a loopback port, as a client really reaches it."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # against a hang, not a speed assertion
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://{HOST}:{port}"
    server.should_exit = True
    thread.join(30)


def _generate_client(document: dict[str, Any], folder: Path) -> None:
    spec = folder / "openapi.json"
    spec.write_text(json.dumps(document))
    # No post-hooks: the generator would run ruff from PATH on its output.
    config = folder / "generator.json"
    config.write_text(json.dumps({"post_hooks": []}))
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(spec),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(folder / "cybermission_client"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=folder,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # A warning means an operation or a model was left out of the client.
    assert "Warning" not in generated.stdout, generated.stdout


def test_openapi_generated_client_calls_the_served_app(
    app: FastAPI, engine: Engine, served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_world(engine)
    _generate_client(app.openapi(), tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    client_module = importlib.import_module("cybermission_client")
    get_assets = importlib.import_module("cybermission_client.api.assets.get_assets")
    get_scan = importlib.import_module("cybermission_client.api.scans.get_scan")
    models = importlib.import_module("cybermission_client.models")
    try:
        with client_module.AuthenticatedClient(base_url=served, token=TOKEN) as client:
            page = get_assets.sync(client=client)
            assert isinstance(page, models.PageDeviceRead)
            expected = sorted(rows.device for rows in world.orgs.values())
            assert sorted(d.id for d in page.items) == expected
            missing = get_scan.sync_detailed(scan_run_id="no-such-run", client=client)
            assert missing.status_code == 404
            assert isinstance(missing.parsed, models.Problem)
            assert missing.parsed.type_ == "urn:cybermission:problem:not-found"
        with client_module.AuthenticatedClient(base_url=served, token="wrong") as stranger:
            refused = get_assets.sync_detailed(client=stranger)
            assert refused.status_code == 401
            assert isinstance(refused.parsed, models.Problem)
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "cybermission_client"]:
            del sys.modules[name]
