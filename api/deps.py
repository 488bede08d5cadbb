"""Request dependencies: settings, engine, one transactional session, and the admin bearer check."""

import hmac
from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from api.errors import AuthenticationError
from cybermission.config import Settings
from cybermission.db import session_scope

# auto_error=False: the refusal (401 problem + WWW-Authenticate) is ours, not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="admin-token",
    description="The admin token from CYBERMISSION_ADMIN_TOKEN.",
)

ADMIN_PRINCIPAL = "api:admin"


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


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Return the caller's principal, or raise :class:`AuthenticationError`."""
    if settings.admin_token is None:
        raise AuthenticationError(
            "the API has no admin token configured: set CYBERMISSION_ADMIN_TOKEN to a long random "
            "secret (for example `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) "
            "and restart; `cybermission demo` generates one and prints it"
        )
    if credentials is None:
        raise AuthenticationError("send the admin token as `Authorization: Bearer <token>`")
    expected = settings.admin_token.get_secret_value().encode()
    # Constant-time comparison: response timing must not reveal how much of the token matched.
    if not expected or not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise AuthenticationError("the bearer token is not valid", invalid_token=True)
    return ADMIN_PRINCIPAL


PrincipalDep = Annotated[str, Depends(require_admin)]
