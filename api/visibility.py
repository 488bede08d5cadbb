"""Organisation scoping: which rows a caller may see (global tokens see every organisation).

A row of another organisation is reported as not found: a partner must not learn that an id
exists elsewhere. Rows with no organisation (devices outside every placed scope) are visible to
global tokens only.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, true
from sqlalchemy.sql.elements import SQLCoreOperations
from sqlmodel import Session, col, select

from cybermission.auth.service import Principal
from cybermission.errors import NotFoundError
from cybermission.inventory.models import Device
from cybermission.scans.models import ScanRun, Scope
from cybermission.sites.models import Organization, Site, Zone

T = TypeVar("T")


def org_filter(caller: Principal, column: SQLCoreOperations[Any]) -> ColumnElement[bool]:
    """A WHERE clause limiting ``column`` (an organization_id) to what the caller sees."""
    if caller.organization_id is None:
        return true()
    return column == caller.organization_id


def _get_visible(
    session: Session,
    caller: Principal,
    model: type[T],
    ident: str,
    what: str,
    organization_of: Callable[[T], str | None],
) -> T:
    """The row ``ident`` of ``model`` if the caller's organisation may see it; otherwise, and
    when it does not exist, the same not-found (no hint that it exists elsewhere)."""
    row = session.get(model, ident)
    if row is None or not caller.sees(organization_of(row)):
        raise NotFoundError(f"no {what} with id {ident!r}")
    return row


def device_or_404(session: Session, caller: Principal, device_id: str) -> Device:
    return _get_visible(session, caller, Device, device_id, "device", lambda d: d.organization_id)


def scan_run_or_404(session: Session, caller: Principal, scan_run_id: str) -> ScanRun:
    return _get_visible(
        session, caller, ScanRun, scan_run_id, "scan run", lambda r: r.organization_id
    )


def organization_or_404(session: Session, caller: Principal, organization_id: str) -> Organization:
    return _get_visible(
        session, caller, Organization, organization_id, "organisation", lambda o: o.id
    )


def site_or_404(session: Session, caller: Principal, site_id: str) -> Site:
    return _get_visible(session, caller, Site, site_id, "site", lambda s: s.organization_id)


def zone_or_404(session: Session, caller: Principal, zone_id: str) -> Zone:
    zone = session.get(Zone, zone_id)
    if zone is None:
        raise NotFoundError(f"no zone with id {zone_id!r}")
    site_or_404(session, caller, zone.site_id)
    return zone


def scope_organization(session: Session, scope: Scope) -> str | None:
    """A scope belongs to the organisation of its site; a scope with no site is global."""
    if scope.site_id is None:
        return None
    site = session.get(Site, scope.site_id)
    return site.organization_id if site is not None else None


def scope_or_404(session: Session, caller: Principal, scope_id: str) -> Scope:
    return _get_visible(
        session, caller, Scope, scope_id, "scope", lambda s: scope_organization(session, s)
    )


def visible_scopes(session: Session, caller: Principal) -> list[Scope]:
    """The scopes the caller sees, by name: an organisation's are those of its sites."""
    query = select(Scope).order_by(col(Scope.name))
    if caller.organization_id is not None:
        sites = select(Site.id).where(Site.organization_id == caller.organization_id)
        query = query.where(col(Scope.site_id).in_(sites))
    return list(session.exec(query).all())
