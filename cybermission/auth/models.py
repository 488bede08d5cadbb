"""The API token table (the roles it carries are in :mod:`cybermission.auth.roles`)."""

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
