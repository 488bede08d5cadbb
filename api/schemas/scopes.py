"""Authorised scopes: a new scope, the fields a change may set, and a stored scope."""

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from api.schemas import Id, ReadModel, RequestModel, UpdateModel

# A scope of a few hundred networks at most per request.
MAX_SCOPE_NETWORKS = 512

Cidr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ScopeCreate(RequestModel):
    """An authorised network scope; the core refuses malformed or too-wide CIDRs."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    cidrs: list[Cidr] = Field(min_length=1, max_length=MAX_SCOPE_NETWORKS)
    excludes: list[Cidr] = Field(default_factory=list, max_length=MAX_SCOPE_NETWORKS)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    reference: str = Field(default="", max_length=500)
    site_id: Id | None = None
    zone_id: Id | None = None


class ScopeUpdate(UpdateModel):
    """Fields to change on a scope; absent fields stay as they are, null clears a validity date
    or the placement."""

    clearable = frozenset({"valid_from", "valid_until", "site_id", "zone_id"})

    cidrs: list[Cidr] | None = Field(default=None, min_length=1, max_length=MAX_SCOPE_NETWORKS)
    excludes: list[Cidr] | None = Field(default=None, max_length=MAX_SCOPE_NETWORKS)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    reference: str | None = Field(default=None, max_length=500)
    site_id: Id | None = None
    zone_id: Id | None = None


class ScopeRead(ReadModel):
    id: str
    name: str
    cidrs: list[str]
    excludes: list[str]
    valid_from: datetime | None
    valid_until: datetime | None
    reference: str
    site_id: str | None
    zone_id: str | None
    # Null when the scope authorises; else why it cannot under today's input rules (stored before
    # a rule existed): no scan reaches its networks until an admin fixes (PATCH) or deletes it.
    invalid_reason: str | None
    created_at: datetime
