"""Authorised scopes: list, read, add, change, remove (the scope guard reads them on every scan).

Admins manage scopes; an organisation's admin manages only scopes placed on its own sites.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from sqlmodel import Session

from api.deps import Reader, SessionDep, require
from api.schemas import ScopeCreate, ScopeRead, ScopeUpdate
from api.visibility import scope_or_404, site_or_404, visible_scopes, zone_or_404
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.errors import ValidationError
from cybermission.guard import parse_network
from cybermission.scans.models import ScopeBase
from cybermission.scans.scopes import create_scope, delete_scope

router = APIRouter(prefix="/scopes", tags=["scopes"])

ScopeId = Annotated[str, Path(max_length=64)]
Manager = Annotated[Principal, Depends(require(Permission.MANAGE_SCOPES))]


def _check_placement(
    session: Session, caller: Principal, site_id: str | None, zone_id: str | None
) -> None:
    """The site and zone exist, are the caller's, and the zone lies in the site."""
    if caller.organization_id is not None and site_id is None:
        raise ValidationError("site_id: an organisation's scope must name one of its sites")
    if site_id is not None:
        site_or_404(session, caller, site_id)
    if zone_id is not None:
        zone = zone_or_404(session, caller, zone_id)
        if site_id is None or zone.site_id != site_id:
            raise ValidationError("zone_id: the zone must belong to the scope's site_id")


@router.get("", summary="The scopes the caller sees, by name")
def get_scopes(session: SessionDep, caller: Reader) -> list[ScopeRead]:
    return [ScopeRead.model_validate(s) for s in visible_scopes(session, caller)]


@router.get("/{scope_id}", summary="One scope", responses={404: {"description": "No such scope"}})
def get_scope(scope_id: ScopeId, session: SessionDep, caller: Reader) -> ScopeRead:
    return ScopeRead.model_validate(scope_or_404(session, caller, scope_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Authorise a scope",
    responses={409: {"description": "A scope with that name exists"}},
)
def post_scope(body: ScopeCreate, session: SessionDep, caller: Manager) -> ScopeRead:
    _check_placement(session, caller, body.site_id, body.zone_id)
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
    scope = scope_or_404(session, caller, scope_id)
    changes = body.model_dump(exclude_unset=True)
    for cidr in changes.get("cidrs") or []:
        parse_network(cidr, field="cidrs")
    for cidr in changes.get("excludes") or []:
        parse_network(cidr, field="excludes")
    if "cidrs" in changes and not changes["cidrs"]:
        raise ValidationError("cidrs: a scope needs at least one network")
    site_id = changes.get("site_id", scope.site_id)
    zone_id = changes.get("zone_id", scope.zone_id)
    _check_placement(session, caller, site_id, zone_id)
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
    return ScopeRead.model_validate(scope)


@router.delete(
    "/{scope_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Withdraw a scope (scans refuse its networks from now on)",
    responses={404: {"description": "No such scope"}},
)
def remove_scope(scope_id: ScopeId, session: SessionDep, caller: Manager) -> Response:
    scope = scope_or_404(session, caller, scope_id)
    delete_scope(session, name=scope.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
