"""Authorised scopes in the store, and the scope guard built from them."""

from collections.abc import Sequence

from sqlmodel import Session, col, select

from cybermission.config import Settings
from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.guard import ScopeGuard, ScopeRule, parse_network
from cybermission.scans.models import Scope, ScopeBase

DEFAULT_SCOPE_NAME = "default-loopback"


def create_scope(session: Session, *, data: ScopeBase) -> Scope:
    """Store a scope after validating every CIDR (too-wide or malformed networks are refused)."""
    for cidr in data.cidrs:
        parse_network(cidr, field="cidrs")
    for cidr in data.excludes:
        parse_network(cidr, field="excludes")
    if not data.cidrs:
        raise ValidationError("cidrs: a scope needs at least one network")
    if session.exec(select(Scope).where(Scope.name == data.name)).first() is not None:
        raise ConflictError(f"name: a scope named {data.name!r} already exists")
    scope = Scope.model_validate(data)
    session.add(scope)
    session.flush()
    return scope


def list_scopes(session: Session) -> list[Scope]:
    return list(session.exec(select(Scope).order_by(col(Scope.name))).all())


def delete_scope(session: Session, *, name: str) -> None:
    scope = session.exec(select(Scope).where(Scope.name == name)).first()
    if scope is None:
        raise NotFoundError(f"no scope named {name!r}")
    session.delete(scope)


def guard_from_scopes(scopes: Sequence[Scope], settings: Settings) -> ScopeGuard:
    """Stored scopes when there are any; otherwise the settings' default (loopback only)."""
    if not scopes:
        return ScopeGuard([ScopeRule.build(DEFAULT_SCOPE_NAME, settings.default_scope_cidrs)])
    return ScopeGuard(
        [
            ScopeRule.build(
                s.name,
                s.cidrs,
                s.excludes,
                s.valid_from,
                s.valid_until,
                site_id=s.site_id,
                zone_id=s.zone_id,
            )
            for s in scopes
        ]
    )


def build_guard(session: Session, settings: Settings) -> ScopeGuard:
    return guard_from_scopes(list_scopes(session), settings)
