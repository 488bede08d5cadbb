"""Authorised scopes: list, read, add, change, remove (the scope guard reads them on every scan).

Admins manage scopes; an organisation's admin manages only scopes placed on its own sites.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from api.deps import Reader, SessionDep, require
from api.schemas.scopes import ScopeCreate, ScopeRead, ScopeUpdate
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.scans.models import ScopeBase
from cybermission.scans.scopes import (
    check_scope_placement,
    create_scope,
    delete_scope,
    get_scope_or_raise,
    list_scopes,
    update_scope,
)

router = APIRouter(prefix="/scopes", tags=["scopes"])

ScopeId = Annotated[str, Path(max_length=64)]
Manager = Annotated[Principal, Depends(require(Permission.MANAGE_SCOPES))]


@router.get("", summary="The scopes the caller sees, by name")
def get_scopes(session: SessionDep, caller: Reader) -> list[ScopeRead]:
    rows = list_scopes(session, visible_to=caller.organization_id)
    return [ScopeRead.model_validate(s) for s in rows]


@router.get("/{scope_id}", summary="One scope", responses={404: {"description": "No such scope"}})
def get_scope(scope_id: ScopeId, session: SessionDep, caller: Reader) -> ScopeRead:
    scope = get_scope_or_raise(
        session=session, scope_id=scope_id, visible_to=caller.organization_id
    )
    return ScopeRead.model_validate(scope)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Authorise a scope",
    responses={
        409: {"description": "The organisation already has a scope with that name"},
        422: {
            "description": "Malformed networks, or networks outside the organisation's allocations"
        },
    },
)
def post_scope(body: ScopeCreate, session: SessionDep, caller: Manager) -> ScopeRead:
    check_scope_placement(
        session=session,
        site_id=body.site_id,
        zone_id=body.zone_id,
        visible_to=caller.organization_id,
    )
    scope = create_scope(session, data=ScopeBase.model_validate(body.model_dump()))
    return ScopeRead.model_validate(scope)


@router.patch(
    "/{scope_id}",
    summary="Change a scope (networks, validity, placement)",
    responses={404: {"description": "No such scope"}},
)
def patch_scope(
    scope_id: ScopeId, body: ScopeUpdate, session: SessionDep, caller: Manager
) -> ScopeRead:
    scope = update_scope(
        session=session,
        scope_id=scope_id,
        changes=body.model_dump(exclude_unset=True),
        visible_to=caller.organization_id,
    )
    return ScopeRead.model_validate(scope)


@router.delete(
    "/{scope_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Withdraw a scope (scans refuse its networks from now on)",
    responses={404: {"description": "No such scope"}},
)
def remove_scope(scope_id: ScopeId, session: SessionDep, caller: Manager) -> Response:
    scope = get_scope_or_raise(
        session=session, scope_id=scope_id, visible_to=caller.organization_id
    )
    delete_scope(session, scope=scope)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
