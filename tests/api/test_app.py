"""The application factory: OpenAPI served, nothing built at import, engine owned or borrowed,
what start-up built kept out of the collector's full passes while it serves."""

import gc

import httpx
from sqlalchemy import Engine

from api.app import create_app
from cybermission import __version__
from cybermission.config import Settings


async def test_create_app_serves_openapi(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"] == {
        "title": "cybermission",
        "version": __version__,
        "description": schema["info"]["description"],
    }
    for path in (
        "/api/v1/scans",
        "/api/v1/scans/{scan_run_id}",
        "/api/v1/assets",
        "/api/v1/assets/{device_id}",
        "/api/v1/findings",
        "/api/v1/scopes",
    ):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["bearer-token"]["scheme"] == "bearer"
    assert "ScanRunRead" in schema["components"]["schemas"]


async def test_create_app_serves_docs(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


async def test_create_app_owns_engine_from_settings(
    settings: Settings, sqlite_engine: Engine
) -> None:
    # Without an engine the app builds one from settings.database_url at startup.
    app = create_app(settings.model_copy(update={"database_url": str(sqlite_engine.url)}))
    assert not hasattr(app.state, "engine")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            response = await client.get("/readyz")
        assert app.state.engine is not sqlite_engine
    assert response.status_code == 200


async def test_what_start_up_built_is_frozen_while_the_app_serves(
    settings: Settings, sqlite_engine: Engine
) -> None:
    """A full collection walks every tracked object; start-up's (the app, its routes, the
    models) live as long as the service, so they are frozen out of it while it serves and
    handed back to the collector when it stops."""
    gc.unfreeze()
    app = create_app(settings, engine=sqlite_engine)
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0
        tracked = {id(o) for o in gc.get_objects(generation=2)}
        assert id(app) not in tracked  # frozen objects are in no generation
    assert gc.get_freeze_count() == 0
    assert any(o is app for o in gc.get_objects(generation=2))
