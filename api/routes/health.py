"""Liveness and readiness probes: /healthz is always open, /readyz proves the store answers."""

import logging

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from api.deps import EngineDep
from api.errors import NotReadyError
from api.schemas.health import HealthRead
from cybermission import __version__
from cybermission.db import store_holds
from cybermission.scans.models import ScanRun

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> HealthRead:
    return HealthRead(status="ok", version=__version__)


@router.get(
    "/readyz",
    summary="Readiness: the store answers and is migrated",
    responses={503: {"description": "The store is unreachable or not migrated"}},
)
def readyz(engine: EngineDep) -> HealthRead:
    try:
        # The app never creates tables (Alembic does): an unmigrated store is not ready.
        migrated = store_holds(engine, ScanRun.__tablename__)
    except SQLAlchemyError as exc:
        logger.warning("store unreachable", extra={"error": exc.__class__.__name__})
        raise NotReadyError("the store does not answer") from exc
    if not migrated:
        raise NotReadyError("the store is not migrated: run `cybermission db upgrade`")
    return HealthRead(status="ready", version=__version__)
