"""Liveness and readiness."""

from pathlib import Path

import httpx
from pydantic import SecretStr

from api.app import create_app
from cybermission.config import Settings
from cybermission.db import create_db_engine
from tests.api.conftest import BASE_URL, assert_problem


async def test_readyz_ready_on_migrated_store(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_readyz_not_ready_on_unmigrated_store(settings: Settings, tmp_path: Path) -> None:
    empty = create_db_engine(f"sqlite:///{tmp_path}/empty.db")
    app = create_app(settings.model_copy(update={"admin_token": SecretStr("x")}), engine=empty)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                response = await client.get("/readyz")
    finally:
        empty.dispose()
    body = assert_problem(response, 503, "not-ready")
    assert "migrat" in str(body["detail"])
    assert response.headers["retry-after"] == "5"


async def test_healthz_reports_version(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/healthz")
    assert response.json()["version"]
