"""Fixtures for the HTTP API: an app on a migrated store, and clients with and without the token."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine

from api.app import create_app
from cybermission.config import Settings
from tests.api.browser import chromium
from tests.api.world import World, build_world

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TOKEN = "test-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE_URL = "http://api.test"


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_token": SecretStr(TOKEN)})


@pytest.fixture
def app(api_settings: Settings, engine: Engine) -> FastAPI:
    # `engine` (tests/conftest.py) is an empty store with every table, on SQLite and PostgreSQL.
    return create_app(api_settings, engine=engine)


@asynccontextmanager
async def served(
    app: FastAPI, headers: dict[str, str] | None = None, base_url: str = BASE_URL
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` in process, with the app's lifespan entered.

    ASGITransport does not run the lifespan; enter it here so startup and shutdown really run (the
    shutdown stops and awaits every scan the app started, so a test's scans never outlive it).
    """
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url=base_url, headers=headers or {}
        ) as client:
            yield client


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    """One headless Chromium per module of browser tests (they call ``require_chromium()``)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(server: str, browser: "Browser") -> Iterator["Page"]:
    """A fresh browser context on the module's ``server``; closed before the server stops (an
    open page may hold the event stream open)."""
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending the right admin token."""
    async with served(app, AUTH) as c:
        yield c


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending no token."""
    async with served(app) as c:
        yield c


@pytest.fixture
async def world_client(
    api_settings: Settings, engine: Engine
) -> AsyncIterator[tuple[httpx.AsyncClient, World]]:
    """A client with no token of its own and the two-organisation world (tests/api/world.py)
    whose tokens each request names; background scans are awaited before the store goes."""
    world = build_world(engine)
    app: FastAPI = create_app(api_settings, engine=engine)
    async with served(app) as client:
        yield client, world
        await app.state.scan_tasks.wait()


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """RFC 9457 shape: the media type and the five members, with our type URI."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:cybermission:problem:{slug}"
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["instance"] == response.request.url.path
    assert "Traceback" not in response.text
    return body
