"""Shared rule packs: the coordinator publishes versions; each organisation's own admins adopt
(optionally pinned to a version) or decline them; everyone of the organisation reads what its
scans evaluate. The coordinator reads how many organisations evaluate each version (withheld
when a few), not which."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from api.deps import (
    Coordinator,
    CoordinatorWriter,
    OrganizationManager,
    Reader,
    SessionDep,
    SettingsDep,
)
from api.errors import ForbiddenError
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
    adopted_packs,
    compile_pack,
    decide,
    get_pack_version_or_raise,
    list_decisions,
    list_packs,
    publish_pack,
)
from cybermission.sites.service import get_organization_or_raise
from cybermission.territory.uptake import pack_uptake

router = APIRouter(tags=["rule packs"])

Ident = Annotated[str, Path(max_length=64)]
PackName = Annotated[str, Path(max_length=100)]


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
        for u in pack_uptake(session, threshold=settings.territory.threshold)
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
    version: Annotated[int, Path(ge=1, le=1_000_000)],
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
    get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=caller.organization_id
    )
    return OrganizationRulePacksRead.model_validate(
        {
            "evaluated": [
                RulePackRead.model_validate(_fields(p))
                for p in adopted_packs(session, organization_id=organization_id)
            ],
            "decisions": [
                RulePackDecisionRead.model_validate(d)
                for d in list_decisions(session, organization_id=organization_id)
            ],
        }
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
    get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=caller.organization_id
    )
    # What an organisation's scans evaluate is its own decision: not even a global admin's.
    if caller.organization_id != organization_id:
        raise ForbiddenError("only the organisation's own admins adopt or decline rule packs")
    row = decide(
        session,
        organization_id=organization_id,
        pack_name=name,
        decision=body.decision,
        pinned_version=body.pinned_version,
        decided_by=caller.name,
    )
    return RulePackDecisionRead.model_validate(row)
