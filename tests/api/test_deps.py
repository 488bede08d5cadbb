"""The admin bearer check: no token, wrong token, no token configured, right token."""

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from api.app import create_app
from cybermission.config import Settings
from tests.api.conftest import AUTH, BASE_URL, TOKEN, assert_problem


async def test_require_admin_refuses_missing_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/v1/scans")
    body = assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == 'Bearer realm="cybermission"'
    assert "Authorization: Bearer" in str(body["detail"])


async def test_require_admin_refuses_wrong_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/v1/assets", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == (
        'Bearer realm="cybermission", error="invalid_token"'
    )


async def test_require_admin_refuses_other_scheme(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/v1/findings", headers={"Authorization": f"Basic {TOKEN}"})
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_require_admin_accepts_right_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/v1/scopes", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/scans"),
        ("POST", "/api/v1/scans"),
        ("GET", "/api/v1/scans/some-id"),
        ("GET", "/api/v1/assets"),
        ("GET", "/api/v1/assets/some-id"),
        ("GET", "/api/v1/findings"),
        ("GET", "/api/v1/scopes"),
        ("POST", "/api/v1/scopes"),
    ],
)
async def test_require_admin_guards_every_route(
    anonymous: httpx.AsyncClient, method: str, path: str
) -> None:
    # Authentication comes before body validation: an empty POST is 401, not 422.
    response = await anonymous.request(method, path)
    assert_problem(response, 401, "unauthenticated")


async def test_require_admin_without_configured_token_says_how_to_set_it(
    settings: Settings, sqlite_engine: Engine
) -> None:
    assert settings.admin_token is None
    app: FastAPI = create_app(settings, engine=sqlite_engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            # Even a token that would be right elsewhere is refused: there is nothing to match.
            response = await client.get("/api/v1/scans", headers=AUTH)
            health = await client.get("/healthz")
    body = assert_problem(response, 401, "unauthenticated")
    assert "CYBERMISSION_ADMIN_TOKEN" in str(body["detail"])
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert health.status_code == 200


async def test_require_admin_leaves_healthz_open(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
