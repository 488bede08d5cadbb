"""Organisation scoping: which rows a caller may see (global tokens see every organisation).

A row of another organisation is reported as not found: a partner must not learn that an id
exists elsewhere. Rows with no organisation (devices outside every placed scope) are visible to
global tokens only.
"""

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


def _visible(caller: Principal, organization_id: str | None, what: str, ident: str) -> None:
    if not caller.sees(organization_id):
        raise NotFoundError(f"no {what} with id {ident!r}")


def device_or_404(session: Session, caller: Principal, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFoundError(f"no device with id {device_id!r}")
    _visible(caller, device.organization_id, "device", device_id)
    return device


def scan_run_or_404(session: Session, caller: Principal, scan_run_id: str) -> ScanRun:
    run = session.get(ScanRun, scan_run_id)
    if run is None:
        raise NotFoundError(f"no scan run with id {scan_run_id!r}")
    _visible(caller, run.organization_id, "scan run", scan_run_id)
    return run


def organization_or_404(session: Session, caller: Principal, organization_id: str) -> Organization:
    org = session.get(Organization, organization_id)
    if org is None:
        raise NotFoundError(f"no organisation with id {organization_id!r}")
    _visible(caller, org.id, "organisation", organization_id)
    return org


def site_or_404(session: Session, caller: Principal, site_id: str) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        raise NotFoundError(f"no site with id {site_id!r}")
    _visible(caller, site.organization_id, "site", site_id)
    return site


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
    scope = session.get(Scope, scope_id)
    if scope is None:
        raise NotFoundError(f"no scope with id {scope_id!r}")
    _visible(caller, scope_organization(session, scope), "scope", scope_id)
    return scope


def visible_scopes(session: Session, caller: Principal) -> list[Scope]:
    """The scopes the caller sees, by name: an organisation's are those of its sites."""
    query = select(Scope).order_by(col(Scope.name))
    if caller.organization_id is not None:
        sites = select(Site.id).where(Site.organization_id == caller.organization_id)
        query = query.where(col(Scope.site_id).in_(sites))
    return list(session.exec(query).all())
