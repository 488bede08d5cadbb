"""API tokens: admins create (the secret is returned once), list and revoke them.

An organisation's admin manages only its organisation's tokens and cannot mint global ones.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from api.deps import SessionDep, require
from api.errors import ForbiddenError
from api.schemas.tokens import TokenCreate, TokenIssuedRead, TokenRead
from cybermission.auth.models import Permission
from cybermission.auth.service import (
    Principal,
    create_token,
    get_token_or_raise,
    list_tokens,
    revoke_token,
)
from cybermission.sites.service import get_organization_or_raise

router = APIRouter(prefix="/tokens", tags=["tokens"])

TokenId = Annotated[str, Path(max_length=64)]
Manager = Annotated[Principal, Depends(require(Permission.MANAGE_TOKENS))]


@router.get("", summary="Tokens (never their secrets), newest first")
def get_tokens(session: SessionDep, caller: Manager) -> list[TokenRead]:
    rows = list_tokens(session, visible_to=caller.organization_id)
    return [TokenRead.model_validate(t) for t in rows]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a token; its secret is in this response only",
    responses={403: {"description": "An organisation's admin asked for another organisation"}},
)
def post_token(body: TokenCreate, session: SessionDep, caller: Manager) -> TokenIssuedRead:
    organization_id = body.organization_id
    if caller.organization_id is not None:
        if organization_id is None:
            organization_id = caller.organization_id
        elif organization_id != caller.organization_id:
            raise ForbiddenError("an organisation's admin creates tokens of its organisation only")
    if organization_id is not None:
        get_organization_or_raise(
            session=session, organization_id=organization_id, visible_to=caller.organization_id
        )
    issued = create_token(
        session,
        name=body.name,
        role=body.role,
        organization_id=organization_id,
        created_by=caller.name,
        expires_at=body.expires_at,
    )
    return TokenIssuedRead.model_validate(
        {**TokenRead.model_validate(issued.token).model_dump(), "token": issued.secret}
    )


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a token at once",
    responses={404: {"description": "No such token"}},
)
def delete_token(token_id: TokenId, session: SessionDep, caller: Manager) -> Response:
    get_token_or_raise(session, token_id, visible_to=caller.organization_id)
    revoke_token(session, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
