"""Shared advisory family data: the coordinator publishes versions of family packs
(families.yaml's format); each organisation's own admins adopt one (optionally pinned to a
version) or decline it; everyone of the organisation reads what its devices are matched with.
The coordinator reads how many organisations use each version (withheld when a few), not which."""

from fastapi import APIRouter, status

from api.deps import (
    Coordinator,
    CoordinatorWriter,
    OrganizationManager,
    Reader,
    SessionDep,
    SettingsDep,
)
from api.routes.packs import Ident, PackName, Version, decide_for_organization, organization_packs
from api.schemas.familypacks import (
    FamilyPackCreate,
    FamilyPackDetailRead,
    FamilyPackRead,
    OrganizationFamilyPackRead,
    OrganizationFamilyPacksRead,
    TerritoryFamilyPackRead,
)
from api.schemas.packs import PackDecisionCreate, PackDecisionRead
from cybermission.findings.advisories.family_packs import (
    FAMILY_PACKS,
    family_names,
    publish_family_pack,
)
from cybermission.findings.models import FamilyPack
from cybermission.territory.uptake import pack_uptake

router = APIRouter(tags=["family packs"])


def _fields(pack: FamilyPack) -> dict[str, object]:
    return {
        "name": pack.name,
        "version": pack.version,
        "title": pack.title,
        "notes": pack.notes,
        "families": family_names(pack),
        "published_by": pack.published_by,
        "published_at": pack.published_at,
    }


@router.post(
    "/territory/familypacks",
    status_code=status.HTTP_201_CREATED,
    summary="Publish the next version of shared advisory family data (coordinator)",
    responses={422: {"description": "The document does not read as families.yaml does"}},
)
def post_family_pack(
    body: FamilyPackCreate, session: SessionDep, caller: CoordinatorWriter
) -> FamilyPackDetailRead:
    pack = publish_family_pack(
        session,
        name=body.name,
        title=body.title,
        notes=body.notes,
        document=body.document,
        published_by=caller.name,
    )
    return FamilyPackDetailRead.model_validate({**_fields(pack), "document": pack.document})


@router.get(
    "/territory/familypacks", summary="Published family packs and their uptake (coordinator)"
)
def get_territory_family_packs(
    session: SessionDep, settings: SettingsDep, caller: Coordinator
) -> list[TerritoryFamilyPackRead]:
    return [
        TerritoryFamilyPackRead.model_validate(
            {**_fields(u.pack), "organizations_using": u.organizations_evaluating}
        )
        for u in pack_uptake(session, FAMILY_PACKS, threshold=settings.territory.threshold)
    ]


@router.get(
    "/familypacks", summary="Published family packs, and which ones the caller's matching uses"
)
def get_family_packs(session: SessionDep, caller: Reader) -> list[OrganizationFamilyPackRead]:
    used = {
        (p.name, p.version)
        for p in FAMILY_PACKS.adopted(session, organization_id=caller.organization_id)
    }
    return [
        OrganizationFamilyPackRead.model_validate(
            {**_fields(p), "used": (p.name, p.version) in used}
        )
        for p in FAMILY_PACKS.list_packs(session)
    ]


@router.get(
    "/familypacks/{name}/versions/{version}",
    summary="One published version of family data with its document",
    responses={404: {"description": "No such family pack or version"}},
)
def get_family_pack(
    name: PackName, version: Version, session: SessionDep, caller: Reader
) -> FamilyPackDetailRead:
    pack = FAMILY_PACKS.get_version_or_raise(session, name=name, version=version)
    return FamilyPackDetailRead.model_validate({**_fields(pack), "document": pack.document})


@router.get(
    "/organizations/{organization_id}/familypacks",
    summary="The family packs an organisation's devices are matched with, and its decisions",
    responses={404: {"description": "No such organisation"}},
)
def get_organization_family_packs(
    organization_id: Ident, session: SessionDep, caller: Reader
) -> OrganizationFamilyPacksRead:
    used, decisions = organization_packs(
        session, FAMILY_PACKS, organization_id=organization_id, caller=caller
    )
    return OrganizationFamilyPacksRead(
        used=[FamilyPackRead.model_validate(_fields(p)) for p in used], decisions=decisions
    )


@router.post(
    "/organizations/{organization_id}/familypacks/{name}",
    status_code=status.HTTP_201_CREATED,
    summary="Adopt (optionally pinned) or decline a family pack (the organisation's own admins)",
    responses={
        404: {"description": "No such organisation, family pack or version"},
        409: {"description": "Already decided exactly that"},
    },
)
def post_family_pack_decision(
    organization_id: Ident,
    name: PackName,
    body: PackDecisionCreate,
    session: SessionDep,
    caller: OrganizationManager,
) -> PackDecisionRead:
    return decide_for_organization(
        session, FAMILY_PACKS, organization_id=organization_id, name=name, body=body, caller=caller
    )
