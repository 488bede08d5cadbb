"""Dashboard sign-in: a form POST opens a server-side session held in an HttpOnly, SameSite=Strict
cookie; the token never travels in an address; the session reads only, ends with its token, at its
expiry and at sign-out, and is stored hashed."""

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select

from api.app import create_app
from api.deps import SESSION_COOKIE
from cybermission.auth.models import BrowserSession, Role
from cybermission.auth.service import create_token, revoke_token
from cybermission.config import Settings
from cybermission.db import utcnow
from tests.api.conftest import TOKEN, assert_problem, served

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no Authorization header, keeping cookies like a browser."""
    async with served(app) as client:
        yield client


async def _sign_in(client: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    return await client.post("/dashboard/session", content=f"token={token}", headers=FORM)


def _set_cookie(response: httpx.Response) -> str:
    return next(v for k, v in response.headers.multi_items() if k == "set-cookie")


async def test_sessions_sign_in_sets_a_strict_httponly_cookie(
    browser: httpx.AsyncClient,
) -> None:
    response = await _sign_in(browser)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = _set_cookie(response)
    assert cookie.startswith(f"{SESSION_COOKIE}=cms_")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain http (loopback): a Secure cookie would be dropped
    assert TOKEN not in cookie
    page = await browser.get("/dashboard")
    assert page.status_code == 200
    assert 'data-auth="ok"' in page.text
    assert TOKEN not in page.text


async def test_sessions_cookie_is_secure_over_https(app: FastAPI) -> None:
    async with served(app, base_url="https://api.test") as client:
        cookie = _set_cookie(await _sign_in(client))
        assert "secure" in {p.strip().lower() for p in cookie.split(";")}


async def test_sessions_token_in_the_address_is_not_accepted(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/dashboard", params={"token": TOKEN})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    assert "set-cookie" not in response.headers
    page = await browser.get("/dashboard")
    assert 'data-auth="none"' in page.text


async def test_sessions_cookie_authenticates_reads_not_changes(browser: httpx.AsyncClient) -> None:
    await _sign_in(browser)
    assert (await browser.get("/api/v1/dashboard")).status_code == 200
    assert (await browser.get("/api/v1/assets")).status_code == 200
    refused = await browser.post("/api/v1/scopes", json={"name": "x", "cidrs": ["127.40.9.0/24"]})
    assert_problem(refused, 403, "forbidden")


async def test_sessions_sign_out_revokes_the_session_on_the_server(
    browser: httpx.AsyncClient,
) -> None:
    await _sign_in(browser)
    secret = browser.cookies[SESSION_COOKIE]
    response = await browser.post("/dashboard/sign-out")
    assert response.status_code == 303
    assert SESSION_COOKIE not in browser.cookies
    # A copy of the cookie taken before sign-out opens nothing any more.
    replayed = await browser.get(
        "/api/v1/dashboard", headers={"Cookie": f"{SESSION_COOKIE}={secret}"}
    )
    assert_problem(replayed, 401, "unauthenticated")


async def test_sessions_refuse_a_wrong_token_and_a_cross_site_form(
    browser: httpx.AsyncClient,
) -> None:
    wrong = await _sign_in(browser, "cmt_000000000000_" + "x" * 40)
    assert wrong.status_code == 401
    assert "not valid" in wrong.text
    cross = await browser.post(
        "/dashboard/session",
        content=f"token={TOKEN}",
        headers={**FORM, "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    empty = await browser.post("/dashboard/session", content="", headers=FORM)
    assert empty.status_code == 422
    assert SESSION_COOKIE not in browser.cookies


async def test_sessions_end_with_their_api_token(
    browser: httpx.AsyncClient, engine: Engine
) -> None:
    with Session(engine) as session:
        issued = create_token(session, name="wall-screen", role=Role.VIEWER)
        token_id = issued.token.id
        session.commit()
    await _sign_in(browser, issued.secret)
    assert (await browser.get("/api/v1/dashboard")).status_code == 200
    with Session(engine) as session:
        revoke_token(session, token_id)
        session.commit()
    assert_problem(await browser.get("/api/v1/dashboard"), 401, "unauthenticated")


async def test_sessions_expire(browser: httpx.AsyncClient, engine: Engine) -> None:
    await _sign_in(browser)
    with Session(engine) as session:
        row = session.exec(select(BrowserSession)).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    assert_problem(await browser.get("/api/v1/dashboard"), 401, "unauthenticated")
    page = await browser.get("/dashboard")
    assert "session has ended" in page.text
    assert SESSION_COOKIE not in browser.cookies  # the dead cookie is cleared


async def test_sessions_are_stored_hashed(browser: httpx.AsyncClient, engine: Engine) -> None:
    await _sign_in(browser)
    secret = browser.cookies[SESSION_COOKIE]
    with Session(engine) as session:
        row = session.exec(select(BrowserSession)).one()
    stored = repr(row.model_dump())
    assert secret not in stored
    assert TOKEN not in stored
    assert row.expires_at - row.created_at == timedelta(seconds=3600)


async def test_sessions_of_the_admin_token_end_when_it_changes(
    api_settings: Settings, engine: Engine
) -> None:
    app = create_app(api_settings, engine=engine)
    async with served(app) as client:
        await _sign_in(client)
        secret = client.cookies[SESSION_COOKIE]
    rotated = api_settings.model_copy(update={"admin_token": SecretStr("a-new-admin-token-0123")})
    async with served(create_app(rotated, engine=engine)) as client:
        response = await client.get(
            "/api/v1/dashboard", headers={"Cookie": f"{SESSION_COOKIE}={secret}"}
        )
        assert_problem(response, 401, "unauthenticated")
