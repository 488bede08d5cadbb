"""Organisations (partners), their sites and the sites' zones.

Everyone reads what their organisation holds; admins create. Only a global admin creates an
organisation; an organisation's admin adds sites and zones to its own.
"""

from typing import Annotated

from fastapi import APIRouter, Path, status

from api.deps import OrganizationManager, Reader, SessionDep
from api.errors import ForbiddenError
from api.schemas.organizations import (
    OrganizationCreate,
    OrganizationRead,
    OrganizationUpdate,
    SiteCreate,
    SiteRead,
    ZoneCreate,
    ZoneRead,
)
from cybermission.sites.service import (
    create_organization,
    create_site,
    create_zone,
    get_organization_or_raise,
    get_site_by_id_or_raise,
    list_organizations,
    list_site_zones,
    list_sites,
)

router = APIRouter(tags=["organisations"])

Ident = Annotated[str, Path(max_length=64)]


@router.get("/organizations", summary="Organisations the caller sees, by slug")
def get_organizations(session: SessionDep, caller: Reader) -> list[OrganizationRead]:
    rows = list_organizations(session, visible_to=caller.organization_id)
    return [OrganizationRead.model_validate(o) for o in rows]


@router.post(
    "/organizations",
    status_code=status.HTTP_201_CREATED,
    summary="Add an organisation (global admins)",
    responses={409: {"description": "The slug is taken"}},
)
def post_organization(
    body: OrganizationCreate, session: SessionDep, caller: OrganizationManager
) -> OrganizationRead:
    if not caller.is_global:
        raise ForbiddenError("only a global admin adds organisations")
    org = create_organization(session, slug=body.slug, name=body.name, sector=body.sector)
    return OrganizationRead.model_validate(org)


@router.get(
    "/organizations/{organization_id}",
    summary="One organisation",
    responses={404: {"description": "No such organisation"}},
)
def get_organization(
    organization_id: Ident, session: SessionDep, caller: Reader
) -> OrganizationRead:
    organization = get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=caller.organization_id
    )
    return OrganizationRead.model_validate(organization)


@router.patch(
    "/organizations/{organization_id}",
    summary="Change an organisation's sector (global admins)",
    responses={404: {"description": "No such organisation"}},
)
def patch_organization(
    organization_id: Ident,
    body: OrganizationUpdate,
    session: SessionDep,
    caller: OrganizationManager,
) -> OrganizationRead:
    if not caller.is_global:
        raise ForbiddenError("only a global admin changes an organisation's sector")
    organization = get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=None
    )
    organization.sector = body.sector
    session.add(organization)
    session.flush()
    return OrganizationRead.model_validate(organization)


@router.get("/sites", summary="Sites the caller sees, by slug")
def get_sites(session: SessionDep, caller: Reader) -> list[SiteRead]:
    rows = list_sites(session, visible_to=caller.organization_id)
    return [SiteRead.model_validate(s) for s in rows]


@router.post(
    "/sites",
    status_code=status.HTTP_201_CREATED,
    summary="Add a site to an organisation",
    responses={409: {"description": "The slug is taken"}},
)
def post_site(body: SiteCreate, session: SessionDep, caller: OrganizationManager) -> SiteRead:
    site = create_site(
        session,
        organization_id=body.organization_id,
        slug=body.slug,
        name=body.name,
        timezone=body.timezone,
        visible_to=caller.organization_id,
    )
    return SiteRead.model_validate(site)


@router.get(
    "/sites/{site_id}", summary="One site", responses={404: {"description": "No such site"}}
)
def get_site(site_id: Ident, session: SessionDep, caller: Reader) -> SiteRead:
    site = get_site_by_id_or_raise(
        session=session, site_id=site_id, visible_to=caller.organization_id
    )
    return SiteRead.model_validate(site)


@router.get(
    "/sites/{site_id}/zones",
    summary="A site's zones, by name",
    responses={404: {"description": "No such site"}},
)
def get_zones(site_id: Ident, session: SessionDep, caller: Reader) -> list[ZoneRead]:
    rows = list_site_zones(session=session, site_id=site_id, visible_to=caller.organization_id)
    return [ZoneRead.model_validate(z) for z in rows]


@router.post(
    "/sites/{site_id}/zones",
    status_code=status.HTTP_201_CREATED,
    summary="Add a zone to a site",
    responses={404: {"description": "No such site"}, 409: {"description": "The name is taken"}},
)
def post_zone(
    site_id: Ident, body: ZoneCreate, session: SessionDep, caller: OrganizationManager
) -> ZoneRead:
    zone = create_zone(
        session,
        site_id=site_id,
        name=body.name,
        exposure=body.exposure,
        purdue_level=body.purdue_level,
        visible_to=caller.organization_id,
    )
    return ZoneRead.model_validate(zone)
