"""The event stream (server-sent events) against a real uvicorn server on loopback, read with
httpx streaming: resume after Last-Event-ID, organisation scoping, heartbeats, role check."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session

from api.app import create_app
from cybermission.auth.models import Role
from cybermission.config import Settings
from cybermission.events import EventKind, record_event
from tests.api.world import World, build_world
from tests.timing import scaled

HOST = "127.40.0.20"  # the api tests' loopback range
MAX_LINES = 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def server(api_settings: Settings, engine: Engine) -> AsyncIterator[tuple[str, World]]:
    world = build_world(engine)
    app: FastAPI = create_app(api_settings, engine=engine)
    port = _free_port()
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(500):
        if srv.started:
            break
        await asyncio.sleep(0.01)
    assert srv.started
    yield f"http://{HOST}:{port}", world
    srv.should_exit = True
    await asyncio.wait_for(task, timeout=scaled(10))


async def _frames(lines: AsyncIterator[str], count: int) -> list[dict[str, str]]:
    """Read ``count`` frames (events or comments) off the lines of an SSE response."""
    frames: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for _ in range(MAX_LINES):
        line = await anext(lines)
        if line == "":
            if current:
                frames.append(current)
                current = {}
                if len(frames) == count:
                    return frames
            continue
        field, _, value = line.partition(":")
        current[field or "comment"] = value.strip()
    pytest.fail(f"no {count} frames in {MAX_LINES} lines")


def _add_event(engine: Engine, organization_id: str, subject: str) -> int:
    with Session(engine) as session:
        event = record_event(
            session,
            EventKind.FINDING_CREATED,
            payload={"subject": subject},
            subject_id=subject,
            organization_id=organization_id,
            severity="high",
        )
        session.commit()
        assert event.id is not None
        return event.id


async def test_events_stream_resumes_after_last_event_id(
    server: tuple[str, World], engine: Engine
) -> None:
    base, world = server
    headers = {**world.auth(Role.INTEGRATION, "global"), "Last-Event-ID": "0"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=scaled(10)) as client,
        client.stream("GET", "/api/v1/events/stream", headers=headers) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = await _frames(lines, 3)  # retry, then the two stored events
    assert frames[0] == {"retry": "3000"}
    ids = [int(f["id"]) for f in frames[1:]]
    assert ids == sorted([world.orgs["a"].event, world.orgs["b"].event])
    assert {f["event"] for f in frames[1:]} == {"asset.created"}
    assert json.loads(frames[1]["data"])["kind"] == "asset.created"


async def test_events_stream_tails_new_events_of_its_organisation_only(
    server: tuple[str, World], engine: Engine
) -> None:
    base, world = server
    headers = world.auth(Role.INTEGRATION, "a")
    async with (
        httpx.AsyncClient(base_url=base, timeout=scaled(10)) as client,
        client.stream("GET", "/api/v1/events/stream", headers=headers) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        first = await _frames(lines, 1)
        assert first == [{"retry": "3000"}]
        # Appended after the stream started: organisation B's first, then A's.
        _add_event(engine, world.orgs["b"].organization, "from-b")
        mine = _add_event(engine, world.orgs["a"].organization, "from-a")
        frames = await _frames(lines, 1)
    assert frames[0]["id"] == str(mine)
    assert json.loads(frames[0]["data"])["subject_id"] == "from-a"


async def test_events_stream_sends_heartbeats_when_idle(server: tuple[str, World]) -> None:
    base, world = server
    headers = world.auth(Role.ANALYST, "global")
    async with (
        httpx.AsyncClient(base_url=base, timeout=scaled(10)) as client,
        client.stream(
            "GET", "/api/v1/events/stream", params={"heartbeat_s": 0.5}, headers=headers
        ) as response,
    ):
        frames = await _frames(response.aiter_lines(), 2)
    assert frames[1] == {"comment": "heartbeat"}


async def test_events_stream_refuses_viewer(server: tuple[str, World]) -> None:
    base, world = server
    async with httpx.AsyncClient(base_url=base, timeout=scaled(10)) as client:
        response = await client.get("/api/v1/events/stream", headers=world.auth(Role.VIEWER, "a"))
    assert response.status_code == 403
    assert response.json()["type"] == "urn:cybermission:problem:forbidden"


async def test_events_stream_refuses_bad_last_event_id(server: tuple[str, World]) -> None:
    base, world = server
    headers = {**world.auth(Role.INTEGRATION, "a"), "Last-Event-ID": "yesterday"}
    async with httpx.AsyncClient(base_url=base, timeout=scaled(10)) as client:
        response = await client.get("/api/v1/events/stream", headers=headers)
    assert response.status_code == 422
