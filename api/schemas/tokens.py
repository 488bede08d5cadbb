"""API tokens: a new token, a stored one (never its secret), and the one answer with the secret."""

from datetime import datetime
from typing import Annotated

from pydantic import StringConstraints

from api.schemas import Id, ReadModel, RequestModel
from cybermission.auth.models import Role


class TokenCreate(RequestModel):
    """A new API token; an organisation-scoped admin can only create tokens of its organisation."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    role: Role
    organization_id: Id | None = None
    expires_at: datetime | None = None


class TokenRead(ReadModel):
    id: str
    name: str
    role: Role
    organization_id: str | None
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenIssuedRead(TokenRead):
    """The only time the secret is shown: store it now, the service keeps only its hash."""

    token: str
