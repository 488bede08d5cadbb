"""The HTTP application factory: ``create_app(settings)`` builds it all, nothing at import time."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import Engine

from api.deps import authenticate
from api.errors import install_error_handlers
from api.routes import (
    advisories,
    assets,
    events,
    exports,
    findings,
    health,
    metrics,
    organizations,
    rules,
    scans,
    scopes,
    tokens,
)
from cybermission import __version__
from cybermission.config import Settings
from cybermission.db import create_db_engine

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

DESCRIPTION = """
Safe inventory and exposure of OT devices on authorised networks.

Every `/api/v1` call needs `Authorization: Bearer <token>`: an API token (roles admin, operator,
analyst, viewer, integration; optionally limited to one organisation) or the admin token of
`CYBERMISSION_ADMIN_TOKEN`. Errors are RFC 9457 problem details (`application/problem+json`).
"""


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """Build the application for ``settings``.

    ``engine`` lets a caller (tests, the CLI) share an engine it owns; otherwise the app creates
    one from ``settings.database_url`` at startup and disposes of it at shutdown. The app never
    creates tables: the store is migrated with Alembic beforehand (``/readyz`` says if it is not).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engine is None
        store = create_db_engine(settings.database_url) if engine is None else engine
        app.state.engine = store
        tasks = scans.install_scan_tasks(app, engine=store, settings=settings)
        logger.info("api started", extra={"version": __version__})
        try:
            yield
        finally:
            if len(tasks):
                logger.info("cancelling running scans", extra={"running": len(tasks)})
            await tasks.cancel_all()
            if owned:
                store.dispose()
            logger.info("api stopped")

    app = FastAPI(
        title="cybermission",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    install_error_handlers(app)

    app.include_router(health.router)
    app.include_router(metrics.router)
    # Every /api/v1 route authenticates first (before body validation); each route then requires
    # the permission it needs (api.deps.require) and filters by the caller's organisation.
    v1 = APIRouter(prefix=API_PREFIX, dependencies=[Depends(authenticate)])
    for module in (
        scans,
        assets,
        findings,
        scopes,
        rules,
        advisories,
        organizations,
        tokens,
        events,
        exports,
    ):
        v1.include_router(module.router)
    app.include_router(
        v1,
        responses={
            401: {"description": "Missing, unknown, revoked or expired token (problem details)"},
            403: {"description": "The token's role may not do this (problem details)"},
            422: {"description": "Invalid request (problem details)"},
        },
    )
    return app
