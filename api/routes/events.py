"""The event log over HTTP: a page of events after an id, and a server-sent event stream.

The stream (WHATWG HTML §9.2 server-sent events) tails the event table: each stored event is sent
with ``id:`` its row id, so a client that reconnects with ``Last-Event-ID`` resumes exactly after
the last event it saw. Live scan progress is sent as ``scan.progress`` events without an id (it
is not stored, so it cannot be resumed). A comment line every ``heartbeat_s`` keeps proxies from
closing an idle stream.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, Reader, SessionDep, require
from api.routes.scans import scan_tasks
from api.schemas import MAX_PAGE
from api.schemas.events import EventRead
from api.schemas.scans import ScanProgressRead
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.db import session_scope
from cybermission.errors import ValidationError
from cybermission.events import EventKind, events_after, last_event_id

router = APIRouter(prefix="/events", tags=["events"])

Streamer = Annotated[Principal, Depends(require(Permission.STREAM))]

POLL_S = 0.5
MAX_EVENT_ID = 2**63 - 1  # BIGINT
BATCH = 500


@router.get("", summary="Stored events with id > after_id, oldest first")
def get_events(
    session: SessionDep,
    caller: Reader,
    after_id: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0,
    kind: EventKind | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[EventRead]:
    rows = events_after(
        session,
        after_id=after_id,
        limit=limit if kind is None else MAX_PAGE,
        visible_to=caller.organization_id,
    )
    if kind is not None:
        rows = [e for e in rows if e.kind == kind][:limit]
    return [EventRead.model_validate(e) for e in rows]


def _read_batch(engine: Engine, caller: Principal, after_id: int) -> list[EventRead]:
    with session_scope(engine) as session:
        rows = events_after(
            session, after_id=after_id, limit=BATCH, visible_to=caller.organization_id
        )
        return [EventRead.model_validate(e) for e in rows]


def _last_id(engine: Engine) -> int:
    with session_scope(engine) as session:
        return last_event_id(session=session)


def _frame(data: str, *, event: str, ident: int | None = None) -> str:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


def _parse_last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        parsed = int(value)
    except ValueError as exc:
        raise ValidationError("Last-Event-ID: expected an event id from this stream") from exc
    if not 0 <= parsed <= MAX_EVENT_ID:
        raise ValidationError("Last-Event-ID: expected an event id from this stream")
    return parsed


@router.get(
    "/stream",
    summary="Server-sent events: stored events as they are appended, and live scan progress",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An endless stream"}},
)
async def stream_events(
    request: Request,
    engine: EngineDep,
    caller: Streamer,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after_id: Annotated[
        int | None,
        Query(ge=0, le=MAX_EVENT_ID, description="Start after this id (default: now)"),
    ] = None,
    heartbeat_s: Annotated[float, Query(ge=0.5, le=300)] = 15.0,
) -> StreamingResponse:
    resume = _parse_last_event_id(last_event_id)
    start = resume if resume is not None else after_id
    if start is None:
        start = await run_in_threadpool(_last_id, engine)
    tasks = scan_tasks(request)

    async def frames() -> AsyncIterator[str]:
        last = start
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        progress_seen: dict[str, ScanProgressRead] = {}
        # Reconnection delay the client should use (§9.2.6 "retry").
        yield "retry: 3000\n\n"
        while True:
            batch = await run_in_threadpool(_read_batch, engine, caller, last)
            active = bool(batch)
            for event in batch:
                assert event.id is not None
                last = event.id
                yield _frame(event.model_dump_json(), event=str(event.kind), ident=event.id)
            for run_id, organization_id, live in tasks.running():
                if not caller.sees(organization_id):
                    continue
                read = ScanProgressRead.model_validate(live)
                if progress_seen.get(run_id) != read:
                    progress_seen[run_id] = read
                    body = json.dumps({"scan_run_id": run_id, **read.model_dump()})
                    yield _frame(body, event="scan.progress")
                    active = True
            now = loop.time()
            if active:
                quiet_since = now
            elif now - quiet_since >= heartbeat_s:
                yield ": heartbeat\n\n"
                quiet_since = now
            if len(batch) < BATCH:
                await asyncio.sleep(POLL_S)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        # No caching, no proxy buffering: events must reach the client as they happen.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
