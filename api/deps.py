"""Request dependencies: settings, engine, one transactional session, and who the caller is.

Authentication, one path (:func:`authenticate`) for two carriers: a bearer token (the settings'
admin token, a global admin, or a stored API token, ``cybermission.auth``) or the dashboard's
browser session cookie (``cybermission.auth.sessions``), opened by the dashboard's sign-in form
with such a token. A bearer header wins over a cookie; a cookie session only reads (GET, HEAD):
anything that changes state needs the bearer token itself.

Authorisation: :func:`require` checks a role's permission; the organisation check (a scoped token
sees only its organisation's rows) is done by each route on what it reads, and a row of another
organisation is "not found", never "forbidden", so ids of other partners cannot be probed.
"""

import hmac
from collections.abc import Callable, Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from api.errors import AuthenticationError, ForbiddenError
from cybermission.auth.models import Permission, Role
from cybermission.auth.service import Principal, verify_token
from cybermission.auth.sessions import verify_browser_session
from cybermission.config import Settings
from cybermission.db import session_scope

# auto_error=False: the refusal (401 problem + WWW-Authenticate) is ours, not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer-token",
    description=(
        "An API token (`cybermission tokens create`, or POST /api/v1/tokens), or the admin token "
        "from CYBERMISSION_ADMIN_TOKEN."
    ),
)

SESSION_COOKIE = "cybermission_session"
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="session-cookie",
    description=(
        "The dashboard's browser session (HttpOnly, SameSite=Strict), set by its sign-in form "
        "(POST /dashboard/session); read-only requests."
    ),
)
# A browser session may read; a cross-site form could otherwise ride on it to change state.
SESSION_METHODS = frozenset({"GET", "HEAD"})

ADMIN_PRINCIPAL = "api:admin"
SETTINGS_ADMIN = Principal(name=ADMIN_PRINCIPAL, role=Role.ADMIN)


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_engine(request: Request) -> Engine:
    return cast(Engine, request.app.state.engine)


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]


def get_session(engine: EngineDep) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back if it raises."""
    with session_scope(engine) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a failed commit is an
# error response and a client never reads a 201 for a row that was not stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def admin_token_of(settings: Settings) -> str | None:
    """The settings' admin token in clear (None: not configured)."""
    return settings.admin_token.get_secret_value() if settings.admin_token else None


def authenticate(
    request: Request,
    settings: SettingsDep,
    engine: EngineDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session_secret: Annotated[str | None, Depends(_session_cookie)],
) -> Principal:
    """The caller (bearer token, else session cookie), or :class:`AuthenticationError`."""
    admin_token = admin_token_of(settings)
    if credentials is not None:
        return _bearer_principal(engine, credentials.credentials, admin_token)
    if session_secret:
        if request.method not in SESSION_METHODS:
            raise ForbiddenError(
                "a dashboard session only reads: send `Authorization: Bearer <token>` to change "
                "anything"
            )
        return session_principal(engine, session_secret, admin_token)
    raise AuthenticationError(
        "send an API token as `Authorization: Bearer <token>`"
        + ("" if admin_token is not None else _NO_ADMIN_HINT)
    )


def session_principal(engine: Engine, session_secret: str, admin_token: str | None) -> Principal:
    """Who holds the browser session ``session_secret``, whatever the method: :func:`authenticate`
    lets it only read; the console's forms (``api/console``) also change state with it, behind a
    CSRF token of the same session."""
    with session_scope(engine) as session:
        principal = verify_browser_session(session, session_secret, admin_token=admin_token)
    if principal is None:
        raise AuthenticationError(
            "the dashboard session has ended (signed out, expired, or its token was revoked): "
            "sign in again at /dashboard"
        )
    return principal


def _bearer_principal(engine: Engine, presented: str, admin_token: str | None) -> Principal:
    # Constant time: response timing must not reveal how much of the token matched.
    if admin_token and hmac.compare_digest(presented.encode(), admin_token.encode()):
        return SETTINGS_ADMIN
    with session_scope(engine) as session:
        principal = verify_token(session, presented)
    if principal is None:
        raise AuthenticationError(
            "the bearer token is not valid (unknown, revoked or expired)"
            + ("" if admin_token is not None else _NO_ADMIN_HINT),
            invalid_token=True,
        )
    return principal


_NO_ADMIN_HINT = (
    "; no admin token is configured either: set CYBERMISSION_ADMIN_TOKEN to a long random secret "
    "(for example `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) and restart, or "
    "create a token with `cybermission tokens create` (`cybermission demo` generates one)"
)

CallerDep = Annotated[Principal, Depends(authenticate)]


def require(permission: Permission) -> Callable[[Principal], Principal]:
    """A dependency that lets through only callers whose role carries ``permission``."""

    def check(caller: CallerDep) -> Principal:
        if not caller.can(permission):
            raise ForbiddenError(
                f"the {caller.role} role may not do this (it needs the {permission!s} permission)"
            )
        return caller

    check.__name__ = f"require_{permission.value.replace('-', '_')}"
    return check


def require_admin(caller: CallerDep) -> Principal:
    """Admins only (every permission)."""
    if caller.role is not Role.ADMIN:
        raise ForbiddenError(f"the {caller.role} role may not do this (admins only)")
    return caller


# Who may call a route: one alias per permission that several route modules check, so each is
# declared once.
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Triager = Annotated[Principal, Depends(require(Permission.TRIAGE))]
OrganizationManager = Annotated[Principal, Depends(require(Permission.MANAGE_ORGANIZATIONS))]
# The territory's aggregates and campaigns: a token of no organisation (coordinator, global admin).
Coordinator = Annotated[Principal, Depends(require(Permission.TERRITORY))]
# What only the coordinator changes: campaigns opened and closed, rule packs published.
CoordinatorWriter = Annotated[Principal, Depends(require(Permission.COORDINATE))]
