"""Shared rule packs: the coordinator publishes versions; each organisation's own admins adopt
(optionally pinned to a version) or decline them; everyone of the organisation reads what its
scans evaluate. The coordinator reads how many organisations evaluate each version (withheld
when a few), not which."""

from fastapi import APIRouter, Request, status

from api.deps import (
    Coordinator,
    CoordinatorWriter,
    OrganizationManager,
    Reader,
    SessionDep,
    SettingsDep,
)
from api.routes.packs import Ident, PackName, Version, decide_for_organization, organization_packs
from api.routes.rules import loaded_rules
from api.schemas.rulepacks import (
    OrganizationRulePackRead,
    OrganizationRulePacksRead,
    RulePackCreate,
    RulePackDecisionCreate,
    RulePackDecisionRead,
    RulePackDetailRead,
    RulePackRead,
    TerritoryRulePackRead,
)
from cybermission.rules.models import RulePack
from cybermission.rules.packs import (
    RULE_PACKS,
    adopted_packs,
    compile_pack,
    get_pack_version_or_raise,
    list_packs,
    publish_pack,
)
from cybermission.territory.uptake import pack_uptake

router = APIRouter(tags=["rule packs"])


def _fields(pack: RulePack) -> dict[str, object]:
    return {
        "name": pack.name,
        "version": pack.version,
        "title": pack.title,
        "notes": pack.notes,
        "rule_ids": [rule.id for rule in compile_pack(pack)],
        "published_by": pack.published_by,
        "published_at": pack.published_at,
    }


@router.post(
    "/territory/rulepacks",
    status_code=status.HTTP_201_CREATED,
    summary="Publish the next version of a shared rule pack (coordinator)",
    responses={422: {"description": "A rule does not load, or its id is taken"}},
)
def post_rule_pack(
    body: RulePackCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: CoordinatorWriter,
) -> RulePackDetailRead:
    pack = publish_pack(
        session,
        name=body.name,
        title=body.title,
        notes=body.notes,
        rules=body.rules,
        installed_ids=frozenset(loaded_rules(request, settings)),
        published_by=caller.name,
    )
    return RulePackDetailRead.model_validate({**_fields(pack), "rules": pack.rules})


@router.get("/territory/rulepacks", summary="Published rule packs and their uptake (coordinator)")
def get_territory_rule_packs(
    session: SessionDep, settings: SettingsDep, caller: Coordinator
) -> list[TerritoryRulePackRead]:
    return [
        TerritoryRulePackRead.model_validate(
            {**_fields(u.pack), "organizations_evaluating": u.organizations_evaluating}
        )
        for u in pack_uptake(session, RULE_PACKS, threshold=settings.territory.threshold)
    ]


@router.get("/rulepacks", summary="Published rule packs, and which ones the caller's scans run")
def get_rule_packs(session: SessionDep, caller: Reader) -> list[OrganizationRulePackRead]:
    evaluated = {
        (p.name, p.version) for p in adopted_packs(session, organization_id=caller.organization_id)
    }
    return [
        OrganizationRulePackRead.model_validate(
            {**_fields(p), "evaluated": (p.name, p.version) in evaluated}
        )
        for p in list_packs(session)
    ]


@router.get(
    "/rulepacks/{name}/versions/{version}",
    summary="One published version with its rules",
    responses={404: {"description": "No such pack or version"}},
)
def get_rule_pack(
    name: PackName,
    version: Version,
    session: SessionDep,
    caller: Reader,
) -> RulePackDetailRead:
    pack = get_pack_version_or_raise(session, name=name, version=version)
    return RulePackDetailRead.model_validate({**_fields(pack), "rules": pack.rules})


@router.get(
    "/organizations/{organization_id}/rulepacks",
    summary="The rule packs an organisation's scans evaluate, and its decisions",
    responses={404: {"description": "No such organisation"}},
)
def get_organization_rule_packs(
    organization_id: Ident, session: SessionDep, caller: Reader
) -> OrganizationRulePacksRead:
    evaluated, decisions = organization_packs(
        session, RULE_PACKS, organization_id=organization_id, caller=caller
    )
    return OrganizationRulePacksRead(
        evaluated=[RulePackRead.model_validate(_fields(p)) for p in evaluated], decisions=decisions
    )


@router.post(
    "/organizations/{organization_id}/rulepacks/{name}",
    status_code=status.HTTP_201_CREATED,
    summary="Adopt (optionally pinned) or decline a rule pack (the organisation's own admins)",
    responses={
        404: {"description": "No such organisation, pack or version"},
        409: {"description": "Already decided exactly that"},
    },
)
def post_rule_pack_decision(
    organization_id: Ident,
    name: PackName,
    body: RulePackDecisionCreate,
    session: SessionDep,
    caller: OrganizationManager,
) -> RulePackDecisionRead:
    return decide_for_organization(
        session, RULE_PACKS, organization_id=organization_id, name=name, body=body, caller=caller
    )
