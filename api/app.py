"""The HTTP application factory: ``create_app(settings)`` builds it all, nothing at import time."""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.boundary import InputBoundary
from api.console import assets as console_assets
from api.console import findings as console_findings
from api.console import scans as console_scans
from api.console import schedules as console_schedules
from api.console import sites as console_sites
from api.console import territory as console_territory
from api.deps import authenticate
from api.errors import install_error_handlers
from api.openapi import install_openapi, operation_id
from api.request_deadline import RequestDeadline
from api.routes import (
    advisories,
    alerts,
    allocations,
    assets,
    campaigns,
    communications,
    dashboard,
    docs,
    events,
    exports,
    familypacks,
    findings,
    health,
    metrics,
    organizations,
    rulepacks,
    rules,
    scans,
    schedules,
    scopes,
    territory,
    tokens,
)
from cybermission import __version__
from cybermission.alerts.worker import DeliveryWorker, WorkerOptions
from cybermission.config import Settings
from cybermission.db import create_db_engine
from cybermission.scans.reaper import RunReaper
from cybermission.scans.runner import ScanTasks
from cybermission.scans.scheduler import ScheduleRunner
from cybermission.sensors.service import plan_site_scan

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

DESCRIPTION = """
Safe inventory and exposure of OT devices on authorised networks.

Every `/api/v1` call needs `Authorization: Bearer <token>`: an API token (roles admin, operator,
analyst, viewer, integration; optionally limited to one organisation) or the admin token of
`CYBERMISSION_ADMIN_TOKEN`. Errors are RFC 9457 problem details (`application/problem+json`).
"""


class BackgroundServices:
    """The scheduler, the delivery worker and the run reaper of a service process."""

    def __init__(self, runner: ScheduleRunner, worker: DeliveryWorker, reaper: RunReaper) -> None:
        self.runner = runner
        self.worker = worker
        self.reaper = reaper

    def stop(self) -> None:
        self.runner.stop()
        self.worker.stop()
        self.reaper.stop()


def start_background(engine: Engine, settings: Settings, tasks: ScanTasks) -> BackgroundServices:
    loop = asyncio.get_running_loop()

    def launch(scan_run_id: str) -> None:
        # Ticks run in APScheduler's thread; scan tasks live on the event loop.
        loop.call_soon_threadsafe(tasks.start, scan_run_id)

    # A site with an approved sensor scans there (chunks the central relay dispatches).
    runner = ScheduleRunner(
        engine,
        settings=settings,
        launch=launch,
        plan_site=plan_site_scan,
        tick_s=settings.schedule_tick_s,
    )
    worker = DeliveryWorker(engine, options=WorkerOptions.from_settings(settings.alerts))
    reaper = RunReaper(engine, settings.runs)
    # Runs a previous process left behind are closed before anything new starts.
    reaper.reap_once()
    reaper.start()
    runner.start()
    worker.start()
    return BackgroundServices(runner, worker, reaper)


def create_app(
    settings: Settings, *, engine: Engine | None = None, background: bool = False
) -> FastAPI:
    """Build the application for ``settings``.

    ``background=True`` (``cybermission serve`` and ``demo``) also runs the scheduler and the
    alert delivery worker in this process (each only while it holds its store-wide lock).

    ``engine`` lets a caller (tests, the CLI) share an engine it owns; otherwise the app creates
    one from ``settings.database_url`` at startup and disposes of it at shutdown. The app never
    creates tables: the store is migrated with Alembic beforehand (``/readyz`` says if it is not).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engine is None
        store = (
            create_db_engine(settings.database_url, settings.store) if engine is None else engine
        )
        app.state.engine = store
        tasks = scans.install_scan_tasks(app, engine=store, settings=settings)
        services = start_background(store, settings, tasks) if background else None
        logger.info("api started", extra={"version": __version__})
        # What start-up built lives as long as the service: out of the collector's full passes,
        # which otherwise walk it all and stall the request that triggered one (issue 12: one
        # full collection took 1.3 s in the findings benchmark, a p99 of its own). Freezing
        # splices lists, no walk (no collect first: start-up's little garbage waits for stop).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if services is not None:
                await run_in_threadpool(services.stop)
            if len(tasks):
                logger.info("cancelling running scans", extra={"running": len(tasks)})
            # Why the service stops: the signal `cybermission serve` received, when it says.
            signal_name = getattr(app.state, "stop_signal", None)
            why = f" ({signal_name})" if signal_name else ""
            await tasks.stop_all(f"interrupted: the service stopped{why}")
            if owned:
                store.dispose()
            logger.info("api stopped")

    app = FastAPI(
        title="cybermission",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Swagger UI is served by api.routes.docs from the package's own files, never a CDN;
        # FastAPI's ReDoc page would load from a CDN too: not offered.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    install_error_handlers(app)
    # A store that does not answer ends the request in a 503 (api/request_deadline.py).
    app.add_middleware(RequestDeadline)
    # Outermost: a path or query no store could hold never reaches a route (api/boundary.py).
    app.add_middleware(InputBoundary)

    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(dashboard.page_router)
    # The console's pages: HTML for people, signed in by the dashboard's session (api/console).
    app.include_router(console_assets.router)
    app.include_router(console_findings.router)
    app.include_router(console_scans.router)
    app.include_router(console_schedules.router)
    app.include_router(console_sites.router)
    app.include_router(console_territory.router)
    app.include_router(metrics.router)
    # Every /api/v1 route authenticates first (before body validation); each route then requires
    # the permission it needs (api.deps.require) and filters by the caller's organisation.
    # The prefix is given where v1 is included, not to v1 itself: FastAPI (0.165) includes a
    # router lazily, except that including one with no prefix walks every route it holds to check
    # that no path ends up empty, and that walk builds each route's dependencies and validators
    # (about 95 routes) only to throw them away: it was most of create_app's time, which every API
    # test pays (tests/api: an app per test) and the service pays at start-up. Same routes, same
    # document (the OpenAPI document and the route table compared equal before and after).
    v1 = APIRouter(dependencies=[Depends(authenticate)])
    for module in (
        scans,
        assets,
        communications,
        findings,
        scopes,
        rules,
        rulepacks,
        familypacks,
        advisories,
        organizations,
        allocations,
        tokens,
        events,
        exports,
        schedules,
        alerts,
        dashboard,
        territory,
        campaigns,
    ):
        v1.include_router(module.router)
    app.include_router(
        v1,
        prefix=API_PREFIX,
        responses={
            401: {"description": "Missing, unknown, revoked or expired token (problem details)"},
            403: {"description": "The token's role may not do this (problem details)"},
            422: {"description": "Invalid request (problem details)"},
        },
    )
    install_openapi(app)
    return app
