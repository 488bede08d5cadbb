"""Property-based tests from the OpenAPI schema (schemathesis): no request makes a server error.

In process against the ASGI app with an admin token, on a SQLite and a PostgreSQL store whose
only scopes are loopback /24s of the api tests' range, so a generated scan can reach nothing
else. The endless event stream is left out (it is tested on a real server in
routes/test_events.py).

Stateful too: the schema declares no OpenAPI links, but schemathesis infers them from the
response and path schemas (``POST /scopes`` -> ``GET/PATCH/DELETE /scopes/{scope_id}``, ``POST
/sites`` -> ``POST /sites/{site_id}/zones``, ``POST /scans`` -> ``.../cancel``: 136 transitions),
and its state machine chains real ids through them, reaching the operations on rows a
single-request test only meets as 404s.
"""

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
from pydantic import SecretStr
from schemathesis.core import NotSet
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel

from api.app import create_app
from cybermission.config import load_settings
from cybermission.db import create_db_engine
from cybermission.scans.models import Scope
from tests.api.conftest import AUTH, BASE_URL, TOKEN
from tests.api.world import World, build_world
from tests.conftest import _postgres_engine

FUZZ_SCOPE = "127.40.3.0/24"
EXAMPLES_PER_OPERATION = 6
# Scenarios of the state machine per store, each of up to STATEFUL_STEPS chained calls.
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 8
CALL_TIMEOUT_S = 60


def _app(engine: Engine) -> tuple[FastAPI, World]:
    """The app on ``engine`` with the two-organisation world and a global fuzz scope."""
    SQLModel.metadata.create_all(engine)
    world = build_world(engine)
    with Session(engine) as session:
        session.add(Scope(name="fuzz", cidrs=[FUZZ_SCOPE]))
        session.commit()
    # build_world's scopes cover 127.40.1.0/24 and 127.40.2.0/24: nothing listens there either.
    app_settings = load_settings(
        database_url=engine.url.render_as_string(hide_password=False),
        rules_dirs=[Path("rules")],
        admin_token=SecretStr(TOKEN),
    )
    return create_app(app_settings, engine=engine), world


class AppThread:
    """The app, its lifespan and one client on an event loop of their own (hypothesis is sync)."""

    def __init__(self, app: FastAPI, *, store: str) -> None:
        self.app = app
        self.store = store
        self.loop = asyncio.new_event_loop()
        self._ready: Future[httpx.AsyncClient] = Future()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        async with self.app.router.lifespan_context(self.app):
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                self._ready.set_result(client)
                await self._stop.wait()

    def __enter__(self) -> "AppThread":
        self._thread.start()
        self.client = self._ready.result(timeout=CALL_TIMEOUT_S)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=CALL_TIMEOUT_S)
        self.loop.close()

    def request(self, **kwargs: Any) -> httpx.Response:
        future = asyncio.run_coroutine_threadsafe(self.client.request(**kwargs), self.loop)
        response = future.result(timeout=CALL_TIMEOUT_S)
        CALLS.setdefault(self.store, Counter())[response.status_code] += 1
        return response


# Requests sent and their statuses, per store: printed at the end for the closing note.
CALLS: dict[str, Counter[int]] = {}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzz_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppThread]:
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/fuzz.db")
        with AppThread(_app(engine)[0], store="sqlite") as running:
            yield running
        engine.dispose()
    else:
        for engine in _postgres_engine():
            with AppThread(_app(engine)[0], store="postgres") as running:
                yield running
    counts = CALLS.get(request.param, Counter())
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # what capsys.disabled() does, module-wide
        print(
            f"\nschemathesis on {request.param}: {sum(counts.values())} requests, "
            f"statuses {dict(sorted(counts.items()))}"
        )


# The schema is read at collection from an app that is built but never started (no store).
schema = schemathesis.openapi.from_dict(
    create_app(load_settings(database_url="sqlite://")).openapi()
).exclude(path="/api/v1/events/stream")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_no_server_errors(case: Case, fuzz_app: AppThread) -> None:
    response = _send(fuzz_app, case)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)


def test_schemathesis_stateful_no_server_errors(
    fuzz_app: AppThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """Chains of calls along the inferred links; every answer below 500.

    The store outlives a scenario (rebuilding it per scenario would cost more than the scenarios),
    so a prefix Hypothesis replays can meet other rows (a name taken by an earlier scenario is a
    409, and the link after it has nothing to follow): Hypothesis may then stop with
    FlakyStrategyDefinition, which could also hide a failure it was shrinking. So every answer
    is judged as it arrives and kept: the 5xx list below is the verdict, whatever Hypothesis
    says about its own replay."""
    steps: Counter[str] = Counter()
    server_errors: list[str] = []

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case: Case, **kwargs: Any) -> Response:
            steps[f"{case.method} {case.path}"] += 1
            response = _send(fuzz_app, case)
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code} "
                    f"{response.text[:300]}"
                )
            return Response.from_httpx(response, verify=False)

        def validate_response(
            self, response: Response, case: Case, *args: Any, **kwargs: Any
        ) -> None:
            # Only the property: schema conformance is the stateless test's business.
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)

    before = sum(CALLS.get(fuzz_app.store, Counter()).values())
    # A diverged replay (see above) ends the run early; the recorded answers decide.
    with contextlib.suppress(FlakyStrategyDefinition):
        Workflow.run(
            settings=settings(
                max_examples=STATEFUL_SCENARIOS,
                stateful_step_count=STATEFUL_STEPS,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                # No shrinking: a 5xx is already recorded with its request, and a replay on a
                # changed store would not reproduce it anyway.
                phases=[Phase.generate],
            )
        )
    with capsys.disabled():
        print(
            f"\nschemathesis stateful on {fuzz_app.store}: {sum(steps.values())} calls over "
            f"{len(steps)} operations ({sum(CALLS[fuzz_app.store].values()) - before} requests), "
            f"{len(server_errors)} 5xx"
        )
    assert server_errors == []
    assert len(steps) > 1  # it chained something, or the machine tested nothing


def _send(fuzz_app: AppThread, case: Case) -> httpx.Response:
    body: dict[str, Any] = {}
    if isinstance(case.body, bytes):
        body["content"] = case.body
    elif not isinstance(case.body, NotSet):
        body["json"] = case.body
    return fuzz_app.request(
        method=case.method,
        url=case.formatted_path,
        headers={**(case.headers or {}), **AUTH},
        params=case.query if not isinstance(case.query, NotSet) else None,
        **body,
    )
