"""Authorised scopes in the store, and the scope guard built from them."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import Session, col, select

from cybermission.config import Settings
from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.guard import ScopeGuard, ScopeRule, parse_network
from cybermission.scans.models import Scope, ScopeBase
from cybermission.sites.models import Site
from cybermission.sites.service import get_site_by_id_or_raise, get_zone_or_raise
from cybermission.visibility import get_visible_or_raise

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


def list_scopes(session: Session, *, visible_to: str | None = None) -> list[Scope]:
    """The scopes ``visible_to`` sees, by name: an organisation's are those of its sites
    (None, the CLI's and the pipeline's: every scope)."""
    query = select(Scope).order_by(col(Scope.name))
    if visible_to is not None:
        query = query.where(
            col(Scope.site_id).in_(select(Site.id).where(Site.organization_id == visible_to))
        )
    return list(session.exec(query).all())


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


def _scope_organization(session: Session, scope: Scope) -> str | None:
    """A scope belongs to the organisation of its site; a scope with no site is global."""
    if scope.site_id is None:
        return None
    site = session.get(Site, scope.site_id)
    return site.organization_id if site is not None else None


def get_scope_or_raise(*, session: Session, scope_id: str, visible_to: str | None) -> Scope:
    return get_visible_or_raise(
        session,
        Scope,
        scope_id,
        visible_to=visible_to,
        what="scope",
        organization_of=lambda s: _scope_organization(session, s),
    )


def check_scope_placement(
    *, session: Session, site_id: str | None, zone_id: str | None, visible_to: str | None
) -> None:
    """The site and zone exist, ``visible_to`` sees them, and the zone lies in the site; an
    organisation's scope must name one of its sites (a scope with no site is global)."""
    if visible_to is not None and site_id is None:
        raise ValidationError("site_id: an organisation's scope must name one of its sites")
    if site_id is not None:
        get_site_by_id_or_raise(session=session, site_id=site_id, visible_to=visible_to)
    if zone_id is not None:
        zone = get_zone_or_raise(session=session, zone_id=zone_id, visible_to=visible_to)
        if site_id is None or zone.site_id != site_id:
            raise ValidationError("zone_id: the zone must belong to the scope's site_id")


def update_scope(
    *, session: Session, scope_id: str, changes: Mapping[str, Any], visible_to: str | None
) -> Scope:
    """Change the fields in ``changes`` (networks, validity, reference, placement) of a scope
    ``visible_to`` sees, after checking them all; a None ``reference`` leaves it as it is."""
    scope = get_scope_or_raise(session=session, scope_id=scope_id, visible_to=visible_to)
    for cidr in changes.get("cidrs") or []:
        parse_network(cidr, field="cidrs")
    for cidr in changes.get("excludes") or []:
        parse_network(cidr, field="excludes")
    if "cidrs" in changes and not changes["cidrs"]:
        raise ValidationError("cidrs: a scope needs at least one network")
    check_scope_placement(
        session=session,
        site_id=changes.get("site_id", scope.site_id),
        zone_id=changes.get("zone_id", scope.zone_id),
        visible_to=visible_to,
    )
    valid_from = changes.get("valid_from", scope.valid_from)
    valid_until = changes.get("valid_until", scope.valid_until)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise ValidationError("valid_until: must come after valid_from")
    for field, value in changes.items():
        if field == "reference" and value is None:
            continue
        setattr(scope, field, value)
    session.add(scope)
    session.flush()
    return scope
