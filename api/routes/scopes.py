"""Authorised scopes: list them, add one (the scope guard reads them on every scan)."""

from fastapi import APIRouter, status

from api.deps import SessionDep
from api.schemas import ScopeCreate, ScopeRead
from cybermission.scans.models import ScopeBase
from cybermission.scans.scopes import create_scope, list_scopes

router = APIRouter(prefix="/scopes", tags=["scopes"])


@router.get("", summary="Every stored scope, by name")
def get_scopes(session: SessionDep) -> list[ScopeRead]:
    return [ScopeRead.model_validate(s) for s in list_scopes(session)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Authorise a scope",
    responses={409: {"description": "A scope with that name exists"}},
)
def post_scope(body: ScopeCreate, session: SessionDep) -> ScopeRead:
    scope = create_scope(session, data=ScopeBase.model_validate(body.model_dump()))
    return ScopeRead.model_validate(scope)
