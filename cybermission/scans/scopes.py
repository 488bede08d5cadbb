"""Authorised scopes in the store, their place in a site's zone, and the scope guard built from
them."""

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from cybermission.config import Settings
from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.events import EventKind, record_event
from cybermission.guard import ScopeGuard, ScopeRule, parse_network
from cybermission.scans.models import Scope, ScopeBase
from cybermission.sites.allocations import check_within_allocations
from cybermission.sites.models import Organization, Site, Zone
from cybermission.sites.service import get_site_by_id_or_raise, get_site_or_raise, get_zone_or_raise
from cybermission.visibility import get_visible_or_raise, visible

logger = logging.getLogger(__name__)

DEFAULT_SCOPE_NAME = "default-loopback"
MAX_REASON = 500  # the column's length


def create_scope(session: Session, *, data: ScopeBase) -> Scope:
    """Store a scope after validating every CIDR (too-wide or malformed networks are refused).

    A scope placed on a site belongs to the site's organisation: its networks must lie inside
    that organisation's allocations, and its name must be new in that organisation.
    """
    _check_networks(data.cidrs, data.excludes)
    if not data.cidrs:
        raise ValidationError("cidrs: a scope needs at least one network")
    _check_validity(data.valid_from, data.valid_until)
    scope = Scope.model_validate(data)
    scope.cidrs, scope.excludes = (
        _canonical(scope.cidrs, "cidrs"),
        _canonical(scope.excludes, "excludes"),
    )
    scope.organization_id = _site_organization(session, scope.site_id)
    _check_owner(session, scope)
    session.add(scope)
    session.flush()
    return scope


def _canonical(cidrs: Sequence[str], field: str) -> list[str]:
    """``cidrs`` as the guard reads them (``10.0.0.0/255.255.255.0``, a hostmask
    ``/0.0.0.255``, ``/024`` and upper-case IPv6 all become ``a.b.c.d/n``): what is stored and
    shown is what authorises, not a spelling a reader might take for another network."""
    return [str(parse_network(cidr, field=field)) for cidr in cidrs]


def _check_networks(cidrs: Sequence[str] | None, excludes: Sequence[str] | None) -> None:
    for cidr in cidrs or ():
        parse_network(cidr, field="cidrs")
    for cidr in excludes or ():
        parse_network(cidr, field="excludes")


def _check_validity(valid_from: datetime | None, valid_until: datetime | None) -> None:
    if (
        valid_from is not None
        and valid_until is not None
        and _aware(valid_until) <= _aware(valid_from)
    ):
        raise ValidationError("valid_until: must come after valid_from")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _site_organization(session: Session, site_id: str | None) -> str | None:
    if site_id is None:
        return None
    site = session.get(Site, site_id)
    if site is None:
        raise NotFoundError(f"site_id: no site with id {site_id!r}")
    return site.organization_id


def _check_owner(session: Session, scope: Scope) -> None:
    """The scope's name is new in its organisation (or among global scopes), and an
    organisation's scope lies inside that organisation's allocations."""
    clash = session.exec(
        select(Scope).where(
            Scope.name == scope.name,
            Scope.organization_id == scope.organization_id
            if scope.organization_id is not None
            else col(Scope.organization_id).is_(None),
            Scope.id != scope.id,
        )
    ).first()
    if clash is not None:
        raise ConflictError(f"name: a scope named {scope.name!r} already exists")
    if scope.organization_id is not None:
        check_within_allocations(
            session, organization_id=scope.organization_id, cidrs=scope.cidrs, field="cidrs"
        )


def list_scopes(session: Session, *, visible_to: str | None = None) -> list[Scope]:
    """The scopes ``visible_to`` sees, by name: an organisation's are those of its sites
    (None, the CLI's and the pipeline's: every scope)."""
    query = select(Scope).where(visible(col(Scope.organization_id), visible_to))
    return list(session.exec(query.order_by(col(Scope.name), col(Scope.id))).all())


def find_scope_or_raise(
    session: Session, *, name: str, organization: str | None = None, field: str = "name"
) -> Scope:
    """The scope named ``name`` (the CLI's way to name one); ``organization`` (a slug) picks
    among organisations that use the same name. ``field`` is the input the errors name."""
    query = select(Scope).where(Scope.name == name)
    if organization is not None:
        org = session.exec(select(Organization).where(Organization.slug == organization)).first()
        if org is None:
            raise NotFoundError(f"organization: no organisation {organization!r}")
        query = query.where(Scope.organization_id == org.id)
    found = list(session.exec(query).all())
    if not found:
        raise NotFoundError(f"{field}: no scope named {name!r}")
    if len(found) > 1:
        raise ConflictError(
            f"{field}: {len(found)} organisations have a scope named {name!r};"
            " name the organisation"
        )
    return found[0]


def attach_scope(
    session: Session,
    *,
    scope: str,
    site: str,
    zone: str | None = None,
    organization: str | None = None,
) -> Scope:
    """Place the devices a scope (by name; ``organization`` picks among organisations that use
    the name) covers in a site and, optionally, one of its zones.

    The scope then belongs to the site's organisation: its networks must lie in that
    organisation's allocations and its name be new there. The next scan puts the devices there;
    rules then see ``asset.zone`` and the score the exposure.
    """
    stored = find_scope_or_raise(session, name=scope, organization=organization, field="scope")
    owner = get_site_or_raise(session, slug=site)
    check_within_allocations(
        session, organization_id=owner.organization_id, cidrs=stored.cidrs, field="scope"
    )
    clash = session.exec(
        select(Scope).where(
            Scope.name == stored.name,
            Scope.organization_id == owner.organization_id,
            Scope.id != stored.id,
        )
    ).first()
    if clash is not None:
        raise ConflictError(f"scope: the site's organisation already has a scope {scope!r}")
    stored.site_id = owner.id
    stored.organization_id = owner.organization_id
    stored.zone_id = None
    if zone is not None:
        found = session.exec(
            select(Zone).where(Zone.site_id == owner.id, Zone.name == zone)
        ).first()
        if found is None:
            raise NotFoundError(f"zone: site {site!r} has no zone {zone!r}")
        stored.zone_id = found.id
    session.add(stored)
    session.flush()
    return stored


def delete_scope(session: Session, *, scope: Scope) -> None:
    session.delete(scope)
    session.flush()


def scope_problem(
    cidrs: Sequence[str],
    excludes: Sequence[str],
    valid_from: datetime | None,
    valid_until: datetime | None,
) -> str | None:
    """Why a stored scope cannot authorise under the input boundary's rules (the ones a new scope
    meets), or None. Migration 0005_scope_validity flags existing rows with it too."""
    if not cidrs:
        return "cidrs: a scope needs at least one network"
    try:
        _check_networks(cidrs, excludes)
        _check_validity(valid_from, valid_until)
    except ValidationError as exc:
        return str(exc)[:MAX_REASON]
    return None


def _problem_of(scope: Scope) -> str | None:
    return scope_problem(scope.cidrs, scope.excludes, scope.valid_from, scope.valid_until)


def usable_scopes(session: Session, scopes: Iterable[Scope]) -> list[Scope]:
    """The scopes that can authorise, flagging the others in the caller's transaction.

    A row whose problem changed is updated (a fixed one is unflagged); one newly found invalid is
    logged and told as a ``scope.invalid`` event once: the flag, stored, keeps the next guard
    quiet about it.
    """
    usable: list[Scope] = []
    for scope in scopes:
        problem = _problem_of(scope)
        if problem != scope.invalid_reason:
            scope.invalid_reason = problem
            session.add(scope)
            if problem is not None:
                logger.warning(
                    "stored scope is invalid: left out of the guard until fixed or deleted",
                    extra={"scope_id": scope.id, "scope": scope.name, "reason": problem},
                )
                record_event(
                    session,
                    EventKind.SCOPE_INVALID,
                    payload={"name": scope.name, "reason": problem},
                    subject_id=scope.id,
                    organization_id=scope.organization_id,
                    site_id=scope.site_id,
                )
        if problem is None:
            usable.append(scope)
    session.flush()
    return usable


def scope_guard(scopes: Iterable[Scope]) -> ScopeGuard:
    """The guard of exactly these stored scopes: the one place scope rows become guard rules.

    A row that cannot authorise (:func:`scope_problem`) gives no rule, so one bad row never stops
    the scans of the others; :func:`usable_scopes` flags and reports it.
    """
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
                organization_id=s.organization_id,
            )
            for s in scopes
            if _problem_of(s) is None
        ]
    )


def guard_from_scopes(scopes: Sequence[Scope], settings: Settings) -> ScopeGuard:
    """Stored scopes when there are any; otherwise the settings' default (loopback only)."""
    if not scopes:
        return ScopeGuard([ScopeRule.build(DEFAULT_SCOPE_NAME, settings.default_scope_cidrs)])
    return scope_guard(scopes)


def build_guard(
    session: Session, settings: Settings, *, organization_id: str | None = None
) -> ScopeGuard:
    """The guard of a run of ``organization_id``: that organisation's scopes only, so its run can
    neither reach nor place devices in another organisation's space (None, a global run: every
    scope). An organisation with no scope may scan nothing (the loopback default is global)."""
    scopes = list_scopes(session, visible_to=organization_id)
    if organization_id is not None and not scopes:
        return ScopeGuard([])
    if not scopes:
        return guard_from_scopes(scopes, settings)
    # Stored scopes that are all invalid give an empty guard, never the loopback default.
    return scope_guard(usable_scopes(session, scopes))


def get_scope_or_raise(*, session: Session, scope_id: str, visible_to: str | None) -> Scope:
    return get_visible_or_raise(
        session,
        Scope,
        scope_id,
        visible_to=visible_to,
        what="scope",
        organization_of=lambda s: s.organization_id,
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
    ``visible_to`` sees, after checking them all (a move to another organisation's site is
    checked against that organisation's allocations and names)."""
    scope = get_scope_or_raise(session=session, scope_id=scope_id, visible_to=visible_to)
    for field, value in changes.items():
        if value is None and field in _REQUIRED_ON_UPDATE:
            raise ValidationError(f"{field}: may not be null (send a value, or leave it out)")
    _check_networks(changes.get("cidrs"), changes.get("excludes"))
    if "cidrs" in changes and not changes["cidrs"]:
        raise ValidationError("cidrs: a scope needs at least one network")
    check_scope_placement(
        session=session,
        site_id=changes.get("site_id", scope.site_id),
        zone_id=changes.get("zone_id", scope.zone_id),
        visible_to=visible_to,
    )
    _check_validity(
        changes.get("valid_from", scope.valid_from), changes.get("valid_until", scope.valid_until)
    )
    for field, value in changes.items():
        if field in ("cidrs", "excludes"):
            value = _canonical(value, field)
        setattr(scope, field, value)
    scope.organization_id = _site_organization(session, scope.site_id)
    _check_owner(session, scope)
    scope.invalid_reason = _problem_of(scope)  # fixed: it authorises again
    session.add(scope)
    session.flush()
    return scope


# Columns that hold no null: a PATCH that sends null for one is refused, naming the field.
_REQUIRED_ON_UPDATE = frozenset({"name", "cidrs", "excludes", "reference"})
