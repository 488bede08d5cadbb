"""The one place HTTP status codes are chosen: every error becomes RFC 9457 problem details JSON.

Mapping (the core raises, this module translates):

===============================  ======  ===========================================
error                            status  why
===============================  ======  ===========================================
``AuthenticationError``          401     RFC 9110 §15.5.2, with ``WWW-Authenticate: Bearer``
``ForbiddenError``               403     the token is valid, its role may not do this
``ScopeError``                   403     the request is valid but the target is not authorised
``NotFoundError``                404
``ConflictError``                409
``ValidationError`` (core)       422     the body parsed, its content is wrong
``RequestValidationError``       422     the body or query does not match the schema
``NotReadyError``                503     readiness probe: the store cannot serve
store lost, locked or silent     503     ``store-unavailable``, with ``Retry-After``
anything else                    500     logged at ERROR, nothing of it leaks to the client
===============================  ======  ===========================================

The store's errors: a connection lost (PostgreSQL restarted, ``pg_terminate_backend``), one shut
down by the request's deadline (api/request_deadline.py), SQLite busy or locked past its busy
timeout, a full disk, a schema that is not the code's (``OperationalError``), a pool with no
connection free in time: the service cannot serve now, and the client may retry (503, RFC 9110
§15.6.4). The detail names the store and the error's kind, never the driver's text (it can
carry the store's address); the log keeps that. A constraint or SQL error is our bug: 500.

ScopeError is 403, not 422: RFC 9110 §15.5.4 says 403 is for a request the server understood and
refuses, "for reasons unrelated to the credentials" too. Scanning outside the scope is exactly that:
the input is well formed and means what it says, it is just not authorised, and no correction of the
payload makes it acceptable; the partner's authorisation does. A distinct problem ``type`` keeps it
apart from a role refusal.
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa
from starlette.exceptions import HTTPException as StarletteHTTPException

from cybermission.errors import (
    ConflictError,
    CybermissionError,
    NotFoundError,
    ScopeError,
    ValidationError,
)
from cybermission.store_faults import describe_store_error, is_transient

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Absolute, stable identifiers (RFC 9457 §3.1.1); api/README.md documents each one.
PROBLEM_TYPE_PREFIX = "urn:cybermission:problem:"
BEARER_REALM = 'Bearer realm="cybermission"'


class AuthenticationError(Exception):
    """The request carries no usable token (none, unknown, revoked or expired)."""

    def __init__(self, detail: str, *, invalid_token: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        # RFC 6750 §3.1: error="invalid_token" only when a token was presented and refused.
        self.invalid_token = invalid_token


class ForbiddenError(Exception):
    """The caller is authenticated but its role lacks the permission (RFC 9110 §15.5.4)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotReadyError(Exception):
    """The service cannot serve requests yet (the store is unreachable or not migrated)."""


def problem_response(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
) -> JSONResponse:
    """An RFC 9457 problem details response (type, title, status, detail, instance [, errors])."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors is not None:
        # RFC 9457 §3.2 extension member: one entry per invalid field.
        body["errors"] = list(errors)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _instance(request: Request) -> str:
    return request.url.path


async def _authentication(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthenticationError)
    challenge = BEARER_REALM
    if exc.invalid_token:
        challenge += ', error="invalid_token"'
    return problem_response(
        status=401,
        slug="unauthenticated",
        title="Authentication required",
        detail=exc.detail,
        instance=_instance(request),
        headers={"WWW-Authenticate": challenge},
    )


async def _forbidden(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ForbiddenError)
    return problem_response(
        status=403,
        slug="forbidden",
        title="Not allowed for this role",
        detail=exc.detail,
        instance=_instance(request),
    )


# Order matters only for readability: handlers are looked up along each exception's MRO.
_CORE_ERRORS: tuple[tuple[type[CybermissionError], int, str, str], ...] = (
    (ScopeError, 403, "scope-refused", "Target outside the authorised scope"),
    (NotFoundError, 404, "not-found", "Not found"),
    (ConflictError, 409, "conflict", "Conflict"),
    (ValidationError, 422, "invalid-input", "Invalid input"),
)


async def _core(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, slug, title in _CORE_ERRORS:
        if isinstance(exc, kind):
            return problem_response(
                status=status, slug=slug, title=title, detail=str(exc), instance=_instance(request)
            )
    return await _unexpected(request, exc)


def _field_name(location: Sequence[int | str]) -> str:
    # ("body", "targets", 3) -> "targets[3]"; the leading "body"/"query"/"path" is kept apart.
    name = ""
    for part in location[1:]:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or str(location[0])


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": _field_name(tuple(err.get("loc", ()))),
            "in": str(err.get("loc", ("body",))[0]),
            "message": str(err.get("msg", "invalid")),
            "type": str(err.get("type", "value_error")),
        }
        for err in exc.errors()
    ]
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return problem_response(
        status=422,
        slug="invalid-request",
        title="Invalid request",
        detail=f"the request does not match the schema: {fields}",
        instance=_instance(request),
        errors=errors,
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's own errors: unknown route (404), wrong method (405), ...
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(
        status=exc.status_code,
        slug=f"http-{exc.status_code}",
        title=str(exc.detail),
        detail=str(exc.detail),
        instance=_instance(request),
        headers=exc.headers,
    )


async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        status=503,
        slug="not-ready",
        title="Service not ready",
        detail=str(exc),
        instance=_instance(request),
        headers={"Retry-After": "5"},
    )


RETRY_AFTER_S = 5
_STORE_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


def _store_unavailable(exc: sa.SQLAlchemyError) -> bool:
    """Whether the store, not our code, failed the request (the module docstring lists how)."""
    return isinstance(exc, sa.OperationalError | sa.TimeoutError) or is_transient(exc)


async def _store(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, sa.SQLAlchemyError)
    if not _store_unavailable(exc):
        return await _unexpected(request, exc)
    logger.warning(
        "store unavailable",
        extra={
            "path": request.url.path,
            "method": request.method,
            "error": describe_store_error(exc),
        },
    )
    engine = getattr(request.app.state, "engine", None)
    dialect = engine.dialect.name if engine is not None else "unknown"
    state = "busy or unreachable" if is_transient(exc) else "unable to serve requests"
    kind = (exc.orig if isinstance(exc, sa.DBAPIError) and exc.orig else exc).__class__.__name__
    return problem_response(
        status=503,
        slug="store-unavailable",
        title="Store unavailable",
        detail=(
            f"the store ({_STORE_NAMES.get(dialect, dialect)}) is {state} ({kind}): the "
            f"request did not complete, retry it later"
        ),
        instance=_instance(request),
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Our bug: the log keeps the traceback, the client gets nothing of it.
    logger.error(
        "unhandled error",
        exc_info=exc,
        extra={"path": request.url.path, "method": request.method},
    )
    return problem_response(
        status=500,
        slug="internal-error",
        title="Internal error",
        detail="the server met an unexpected error; it has been logged",
        instance=_instance(request),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register every translation on ``app``."""
    app.add_exception_handler(AuthenticationError, _authentication)
    app.add_exception_handler(ForbiddenError, _forbidden)
    app.add_exception_handler(CybermissionError, _core)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(NotReadyError, _not_ready)
    app.add_exception_handler(sa.SQLAlchemyError, _store)
    app.add_exception_handler(Exception, _unexpected)
