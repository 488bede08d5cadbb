"""Organisations (partners), their sites and the sites' zones.

Everyone reads what their organisation holds; admins create. Only a global admin creates an
organisation; an organisation's admin adds sites and zones to its own.
"""

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Path, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.deps import Reader, SessionDep, require
from api.errors import ForbiddenError
from api.schemas import (
    OrganizationCreate,
    OrganizationRead,
    SiteCreate,
    SiteRead,
    ZoneCreate,
    ZoneRead,
)
from api.visibility import org_filter, organization_or_404, site_or_404
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.errors import ConflictError, ValidationError
from cybermission.sites.models import Organization, Site, Zone

router = APIRouter(tags=["organisations"])

Ident = Annotated[str, Path(max_length=64)]
Manager = Annotated[Principal, Depends(require(Permission.MANAGE_ORGANIZATIONS))]


def _insert(session: Session, row: Organization | Site | Zone, what: str) -> None:
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise ConflictError(f"{what} already exists") from exc


@router.get("/organizations", summary="Organisations the caller sees, by slug")
def get_organizations(session: SessionDep, caller: Reader) -> list[OrganizationRead]:
    query = (
        select(Organization)
        .where(org_filter(caller, col(Organization.id)))
        .order_by(col(Organization.slug))
    )
    return [OrganizationRead.model_validate(o) for o in session.exec(query).all()]


@router.post(
    "/organizations",
    status_code=status.HTTP_201_CREATED,
    summary="Add an organisation (global admins)",
    responses={409: {"description": "The slug is taken"}},
)
def post_organization(
    body: OrganizationCreate, session: SessionDep, caller: Manager
) -> OrganizationRead:
    if not caller.is_global:
        raise ForbiddenError("only a global admin adds organisations")
    org = Organization(slug=body.slug, name=body.name)
    _insert(session, org, f"slug: an organisation {body.slug!r}")
    return OrganizationRead.model_validate(org)


@router.get(
    "/organizations/{organization_id}",
    summary="One organisation",
    responses={404: {"description": "No such organisation"}},
)
def get_organization(
    organization_id: Ident, session: SessionDep, caller: Reader
) -> OrganizationRead:
    return OrganizationRead.model_validate(organization_or_404(session, caller, organization_id))


@router.get("/sites", summary="Sites the caller sees, by slug")
def get_sites(session: SessionDep, caller: Reader) -> list[SiteRead]:
    query = select(Site).where(org_filter(caller, col(Site.organization_id)))
    return [SiteRead.model_validate(s) for s in session.exec(query.order_by(col(Site.slug))).all()]


@router.post(
    "/sites",
    status_code=status.HTTP_201_CREATED,
    summary="Add a site to an organisation",
    responses={409: {"description": "The slug is taken"}},
)
def post_site(body: SiteCreate, session: SessionDep, caller: Manager) -> SiteRead:
    organization_or_404(session, caller, body.organization_id)
    _check_timezone(body.timezone)
    site = Site(
        organization_id=body.organization_id,
        slug=body.slug,
        name=body.name,
        timezone=body.timezone,
    )
    _insert(session, site, f"slug: a site {body.slug!r}")
    return SiteRead.model_validate(site)


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"timezone: {name!r} is not an IANA time zone") from exc


@router.get(
    "/sites/{site_id}", summary="One site", responses={404: {"description": "No such site"}}
)
def get_site(site_id: Ident, session: SessionDep, caller: Reader) -> SiteRead:
    return SiteRead.model_validate(site_or_404(session, caller, site_id))


@router.get(
    "/sites/{site_id}/zones",
    summary="A site's zones, by name",
    responses={404: {"description": "No such site"}},
)
def get_zones(site_id: Ident, session: SessionDep, caller: Reader) -> list[ZoneRead]:
    site = site_or_404(session, caller, site_id)
    query = select(Zone).where(Zone.site_id == site.id).order_by(col(Zone.name))
    return [ZoneRead.model_validate(z) for z in session.exec(query).all()]


@router.post(
    "/sites/{site_id}/zones",
    status_code=status.HTTP_201_CREATED,
    summary="Add a zone to a site",
    responses={404: {"description": "No such site"}, 409: {"description": "The name is taken"}},
)
def post_zone(site_id: Ident, body: ZoneCreate, session: SessionDep, caller: Manager) -> ZoneRead:
    site = site_or_404(session, caller, site_id)
    zone = Zone(
        site_id=site.id, name=body.name, purdue_level=body.purdue_level, exposure=body.exposure
    )
    _insert(session, zone, f"name: a zone {body.name!r} in this site")
    return ZoneRead.model_validate(zone)
