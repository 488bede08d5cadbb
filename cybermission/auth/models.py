"""The API token and browser session tables (their roles: :mod:`cybermission.auth.roles`)."""

from datetime import datetime

from sqlmodel import Field, SQLModel

# Re-exported: the services and the API import the roles with the table.
from cybermission.auth.roles import ROLE_PERMISSIONS as ROLE_PERMISSIONS
from cybermission.auth.roles import Permission as Permission
from cybermission.auth.roles import Role as Role
from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class ApiToken(SQLModel, table=True):
    """A bearer token; only the SHA-256 of the secret is stored, never the secret itself.

    The presented token is ``cmt_<prefix>_<secret>``: ``prefix`` finds the row (unique index),
    the hash of the whole token is compared in constant time.
    """

    __tablename__ = "api_token"

    id: str = Field(default_factory=new_id, primary_key=True)
    prefix: str = Field(max_length=16, unique=True, index=True)
    token_sha256: str = Field(max_length=64)
    name: str = Field(max_length=100)
    role: Role = Field(sa_type=enum_type(Role))
    # None: a global token that sees every organisation.
    organization_id: str | None = Field(default=None, foreign_key="organization.id", index=True)
    created_by: str = Field(default="", max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    def is_live(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now`` (a bearer call, or a session it opened)."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class BrowserSession(SQLModel, table=True):
    """A dashboard sign-in: the cookie's secret is stored only as its SHA-256.

    Opened with an API token (``api_token_id``: the session dies with that token) or with the
    settings' admin token (``admin_token_sha256``: the session dies when that token changes).
    Short-lived (``expires_at``) and revoked at sign-out (``revoked_at``).
    """

    __tablename__ = "browser_session"

    id: str = Field(default_factory=new_id, primary_key=True)
    secret_sha256: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=100)
    role: Role = Field(sa_type=enum_type(Role))
    organization_id: str | None = Field(default=None, foreign_key="organization.id", index=True)
    api_token_id: str | None = Field(default=None, foreign_key="api_token.id", index=True)
    admin_token_sha256: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
