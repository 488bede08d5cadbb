"""Problem details (RFC 9457) for every error, and no leak of internals on a 500."""

import logging

import httpx
import pytest
from fastapi import FastAPI

from cybermission.errors import ConflictError, ProbeError
from tests.api.conftest import assert_problem


async def test_errors_unknown_route_is_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404, "http-404")


async def test_errors_wrong_method_is_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/api/v1/scans"), 405, "http-405")


async def test_errors_unexpected_error_is_500_without_details(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise RuntimeError("secret internal state /etc/passwd")

    app.add_api_route("/boom", boom)
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        response = await client.get("/boom")
    assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    records = [r for r in caplog.records if r.name == "api.errors"]
    assert [r.levelno for r in records] == [logging.ERROR]
    assert records[0].exc_info is not None


async def test_errors_unmapped_core_error_is_500(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A ProbeError reaching HTTP is our bug (probes run in the pipeline), not the client's.
    def probe() -> None:
        raise ProbeError("device at 127.40.9.9 said something odd")

    app.add_api_route("/probe", probe)
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        response = await client.get("/probe")
    assert_problem(response, 500, "internal-error")
    assert "127.40.9.9" not in response.text


async def test_errors_conflict_is_409(app: FastAPI, client: httpx.AsyncClient) -> None:
    def clash() -> None:
        raise ConflictError("name: taken")

    app.add_api_route("/clash", clash)
    body = assert_problem(await client.get("/clash"), 409, "conflict")
    assert body["detail"] == "name: taken"
