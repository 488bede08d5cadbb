"""POST/GET /api/v1/scans: accepted in the background, refused out of scope, followed to the end."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusTcpServer
from sqlalchemy import Engine
from sqlmodel import Session, select

from api.app import create_app
from api.schemas.scans import MAX_TARGETS
from cybermission.config import PacingProfile, PacingSettings, Settings
from cybermission.db import utcnow
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.ownership import RunOwner, claim_run
from tests.api.conftest import AUTH, BASE_URL, assert_problem
from tests.timing import scaled

# 127.40.0.0/16 is the api tests' loopback range (tests/conftest.py address plan).
MODBUS_ADDRESS = "127.40.0.2"
SILENT_ADDRESS = "127.40.0.3"
CLOSED_ADDRESS = "127.40.0.250"
# TEST-NET-1 (RFC 5737): outside the default loopback scope; refused before anything is sent.
OUTSIDE = "192.0.2.1"
TERMINAL = {"succeeded", "partial", "failed"}
MAX_POLLS = 2000

VENDOR = "Cybermission Test Works"
PRODUCT_CODE = "CTW-PLC-40"
REVISION = "4.2"


def _stored_runs(engine: Engine) -> list[ScanRun]:
    with Session(engine) as session:
        return list(session.exec(select(ScanRun)).all())


async def _follow(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """Poll the run until it reaches a terminal status (bounded, so a hang fails the test)."""
    for _ in range(MAX_POLLS):
        response = await client.get(location)
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        if run["status"] in TERMINAL:
            return run
        await asyncio.sleep(0.02)
    pytest.fail(f"scan {location} did not finish; last status {run['status']}")


async def test_scans_post_accepts_and_runs_in_background(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    response = await client.post("/api/v1/scans", json={"targets": [CLOSED_ADDRESS], "ports": [9]})
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/scans/{body['id']}"
    assert body["url"] == response.headers["location"]
    run = await _follow(client, response.headers["location"])
    assert run["id"] == body["id"]
    assert run["targets"] == [CLOSED_ADDRESS]
    assert run["ports"] == [9]
    assert run["requested_by"] == "api:admin"
    assert run["hosts_total"] == 1
    assert run["hosts_probed"] == 0  # nothing listens there
    assert run["finished_at"] is not None
    assert run["started_at"] is not None
    assert run["progress"] is None  # finished: the row is the truth


async def test_scans_out_of_scope_refused_nothing_stored(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    response = await client.post(
        "/api/v1/scans", json={"targets": [CLOSED_ADDRESS, OUTSIDE], "ports": [502]}
    )
    body = assert_problem(response, 403, "scope-refused")
    assert OUTSIDE in str(body["detail"])
    assert _stored_runs(engine) == []
    assert (await client.get("/api/v1/scans")).json() == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"targets": [CLOSED_ADDRESS], "ports": [70000]}, "ports[0]"),
        ({"targets": [CLOSED_ADDRESS], "ports": [0]}, "ports[0]"),
        ({"targets": [CLOSED_ADDRESS], "ports": []}, "ports"),
        ({"targets": []}, "targets"),
        ({"targets": [CLOSED_ADDRESS] * (MAX_TARGETS + 1)}, "targets"),
        ({"targets": [""]}, "targets[0]"),
        ({"ports": [502]}, "targets"),
        ({"targets": [CLOSED_ADDRESS], "intensity": "max"}, "intensity"),
    ],
)
async def test_scans_invalid_body_names_the_field(
    client: httpx.AsyncClient, engine: Engine, payload: dict[str, Any], field: str
) -> None:
    body = assert_problem(await client.post("/api/v1/scans", json=payload), 422, "invalid-request")
    assert field in [e["field"] for e in body["errors"]]
    assert _stored_runs(engine) == []


async def test_scans_malformed_target_is_422(client: httpx.AsyncClient, engine: Engine) -> None:
    # Not a name the resolver would be asked about (no DNS may leave loopback).
    response = await client.post("/api/v1/scans", json={"targets": ["127.40.0.1/33"]})
    body = assert_problem(response, 422, "invalid-input")
    assert "127.40.0.1/33" in str(body["detail"])
    assert _stored_runs(engine) == []


async def test_scans_unknown_run_is_404(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/v1/scans/no-such-run"), 404, "not-found")
    assert "no-such-run" in str(body["detail"])


async def test_scans_list_newest_first(app: FastAPI, client: httpx.AsyncClient) -> None:
    ids = []
    for port in (7, 9):
        response = await client.post(
            "/api/v1/scans", json={"targets": [CLOSED_ADDRESS], "ports": [port]}
        )
        ids.append(response.json()["id"])
    await app.state.scan_tasks.wait()
    listed = (await client.get("/api/v1/scans")).json()
    assert [r["id"] for r in listed] == list(reversed(ids))
    assert [r["id"] for r in (await client.get("/api/v1/scans?limit=1")).json()] == [ids[1]]


async def test_scans_shutdown_records_interruption(api_settings: Settings, engine: Engine) -> None:
    """A run still going when the service stops is marked failed with the reason, not left open."""
    connected = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # never answers: the probe waits for its (long) timeout
        writer.close()

    server = await asyncio.start_server(silent, SILENT_ADDRESS, 502)
    slow = api_settings.model_copy(update={"pacing": PacingSettings(probe_timeout_s=600.0)})
    app = create_app(slow, engine=engine)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE_URL, headers=AUTH
            ) as client:
                response = await client.post(
                    "/api/v1/scans", json={"targets": [SILENT_ADDRESS], "ports": [502]}
                )
                assert response.status_code == 202
                await asyncio.wait_for(connected.wait(), timeout=scaled(60))
                running = (await client.get(response.headers["location"])).json()
                assert running["status"] == "running"
                assert running["progress"]["hosts_total"] == 1
    finally:
        server.close()
        await server.wait_closed()
    [run] = _stored_runs(engine)
    assert run.status == "interrupted"
    assert run.finished_at is not None
    assert run.reason == "interrupted: the service stopped"
    assert any("interrupted" in str(e["error"]) for e in run.errors)


@pytest.fixture
async def modbus_device() -> AsyncIterator[str]:
    """A real pymodbus 3.11 Modbus/TCP server on 127.40.0.2:502 with a device identification."""
    identity = ModbusDeviceIdentification(  # type: ignore[no-untyped-call]
        info_name={
            "VendorName": VENDOR,
            "ProductCode": PRODUCT_CODE,
            "MajorMinorRevision": REVISION,
            "ProductName": "Test PLC",
            "ModelName": "TP-40",
        }
    )
    context = ModbusServerContext(  # type: ignore[no-untyped-call]
        devices=ModbusDeviceContext(), single=True
    )
    server = ModbusTcpServer(context, identity=identity, address=(MODBUS_ADDRESS, 502))
    await server.serve_forever(background=True)
    try:
        yield MODBUS_ADDRESS
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


@pytest.fixture
def lab_app(api_settings: Settings, engine: Engine) -> FastAPI:
    lab = PacingSettings(profile=PacingProfile.LAB)
    return create_app(api_settings.model_copy(update={"pacing": lab}), engine=engine)


async def test_scans_end_to_end_finds_modbus_device(lab_app: FastAPI, modbus_device: str) -> None:
    async with lab_app.router.lifespan_context(lab_app):
        transport = httpx.ASGITransport(app=lab_app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=AUTH
        ) as client:
            response = await client.post(
                "/api/v1/scans", json={"targets": [modbus_device], "ports": [502]}
            )
            assert response.status_code == 202, response.text
            run = await _follow(client, response.headers["location"])
            assert run["status"] == "succeeded", run["errors"]
            assert run["hosts_probed"] == 1
            assert run["open_ports"] == 1
            assert run["observations"] == 1
            assert run["findings"] >= 1
            assert run["sent"]["modbus"]  # what was sent to the device is on record

            assets = (await client.get("/api/v1/assets")).json()
            [asset] = assets["items"]
            assert asset["vendor"] == VENDOR
            detail = (await client.get(f"/api/v1/assets/{asset['id']}")).json()
            assert detail["addresses"] == [modbus_device]
            assert [(s["port"], s["protocol"]) for s in detail["services"]] == [(502, "modbus")]
            assert "device-new" in [c["kind"] for c in detail["recent_changes"]]

            findings = (
                await client.get(
                    "/api/v1/findings", params={"rule_id": "modbus-unauthenticated-reachable"}
                )
            ).json()
            [finding] = findings["items"]
            assert finding["device_id"] == asset["id"]
            assert finding["severity"] == "high"
            assert finding["status"] == "open"
            assert finding["last_scan_run_id"] == run["id"]


async def test_scans_cancel_marks_run_cancelled(api_settings: Settings, engine: Engine) -> None:
    """POST /scans/{id}/cancel stops the task; the run ends cancelled, saying by whom."""
    connected = asyncio.Event()
    address = "127.40.0.4"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, address, 502)
    slow = api_settings.model_copy(update={"pacing": PacingSettings(probe_timeout_s=600.0)})
    app = create_app(slow, engine=engine)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE_URL, headers=AUTH
            ) as client:
                response = await client.post(
                    "/api/v1/scans", json={"targets": [address], "ports": [502]}
                )
                assert response.status_code == 202
                await asyncio.wait_for(connected.wait(), timeout=scaled(60))
                location = response.headers["location"]
                cancelled = await client.post(f"{location}/cancel")
                assert cancelled.status_code == 200, cancelled.text
                run = cancelled.json()
                again = await client.post(f"{location}/cancel")
    finally:
        server.close()
        await server.wait_closed()
    assert run["status"] == "cancelled"
    assert run["finished_at"] is not None
    assert run["reason"].startswith("cancelled by ")
    assert any(e["error"] == run["reason"] for e in run["errors"])
    assert_problem(again, 409, "conflict")


def _run_of(engine: Engine, owner: RunOwner, *, beat_age_s: float) -> str:
    with Session(engine) as session:
        run = ScanRun(targets=["127.40.0.9"], ports=[502], status=ScanStatus.RUNNING)
        claim_run(run, owner, now=utcnow() - timedelta(seconds=beat_age_s))
        session.add(run)
        session.commit()
        return run.id


ELSEWHERE = RunOwner(instance="44444444-4444-4444-4444-444444444444", host="elsewhere", pid=9)


async def test_scans_cancel_of_another_process_run_is_recorded_for_its_owner(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    run_id = _run_of(engine, ELSEWHERE, beat_age_s=0)
    response = await client.post(f"/api/v1/scans/{run_id}/cancel")
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "running"  # its owner stops at its next heartbeat
    assert run["cancel_requested_by"] == "api:admin"
    assert run["owner_host"] == "elsewhere"


async def test_scans_cancel_of_a_run_whose_owner_died_closes_it(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    run_id = _run_of(engine, ELSEWHERE, beat_age_s=3600)
    response = await client.post(f"/api/v1/scans/{run_id}/cancel")
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "cancelled"
    assert run["reason"].startswith("cancelled by api:admin (no heartbeat from its owner")
    again = await client.post(f"/api/v1/scans/{run_id}/cancel")
    assert_problem(again, 409, "conflict")
