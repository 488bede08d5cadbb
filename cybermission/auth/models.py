"""The API token table, the roles a token carries and what each role may do."""

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class Role(StrEnum):
    """What a token is for (api/README.md has the table of permissions)."""

    ADMIN = "admin"  # scopes, organisations, tokens, alert channels, and everything below
    OPERATOR = "operator"  # triggers and cancels scans, edits schedules
    ANALYST = "analyst"  # triages findings, sets asset criticality
    VIEWER = "viewer"  # reads
    INTEGRATION = "integration"  # reads and follows the event stream (SIEM, dashboards)


class Permission(StrEnum):
    READ = "read"
    STREAM = "stream"
    TRIAGE = "triage"  # finding states, asset criticality
    SCAN = "scan"  # trigger and cancel scans
    SCHEDULE = "schedule"
    MANAGE_SCOPES = "manage-scopes"
    MANAGE_TOKENS = "manage-tokens"
    MANAGE_ORGANIZATIONS = "manage-organizations"  # organisations, sites, zones
    MANAGE_CHANNELS = "manage-channels"  # alert channels and policies


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset(
        {Permission.READ, Permission.STREAM, Permission.SCAN, Permission.SCHEDULE}
    ),
    Role.ANALYST: frozenset({Permission.READ, Permission.STREAM, Permission.TRIAGE}),
    Role.VIEWER: frozenset({Permission.READ}),
    Role.INTEGRATION: frozenset({Permission.READ, Permission.STREAM}),
}


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
