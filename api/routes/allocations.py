"""Address space allocated to organisations: global admins allocate and withdraw; every caller
reads the allocations of what it sees (an organisation: its own, to know where its scopes fit)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from api.deps import Reader, SessionDep, require_admin
from api.errors import ForbiddenError
from api.schemas.allocations import AllocationCreate, AllocationRead
from cybermission.auth.service import Principal
from cybermission.sites.allocations import (
    create_allocation,
    delete_allocation,
    get_allocation_or_raise,
    list_allocations,
)
from cybermission.sites.service import get_organization_or_raise

router = APIRouter(prefix="/allocations", tags=["allocations"])

AllocationId = Annotated[str, Path(max_length=64)]


def require_global_admin(caller: Annotated[Principal, Depends(require_admin)]) -> Principal:
    """Only a global admin hands out address space: an organisation cannot widen its own."""
    if not caller.is_global:
        raise ForbiddenError("only a global admin allocates networks to organisations")
    return caller


GlobalAdmin = Annotated[Principal, Depends(require_global_admin)]


@router.get("", summary="The allocations the caller sees, by organisation and network")
def get_allocations(session: SessionDep, caller: Reader) -> list[AllocationRead]:
    rows = list_allocations(session, visible_to=caller.organization_id)
    return [AllocationRead.model_validate(a) for a in rows]


@router.get(
    "/{allocation_id}",
    summary="One allocation",
    responses={404: {"description": "No such allocation"}},
)
def get_allocation(
    allocation_id: AllocationId, session: SessionDep, caller: Reader
) -> AllocationRead:
    allocation = get_allocation_or_raise(
        session=session, allocation_id=allocation_id, visible_to=caller.organization_id
    )
    return AllocationRead.model_validate(allocation)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Allocate a network to an organisation (global admins)",
    responses={
        404: {"description": "No such organisation"},
        409: {"description": "The network is already allocated to that organisation"},
    },
)
def post_allocation(
    body: AllocationCreate, session: SessionDep, caller: GlobalAdmin
) -> AllocationRead:
    get_organization_or_raise(
        session=session, organization_id=body.organization_id, visible_to=caller.organization_id
    )
    allocation = create_allocation(
        session,
        organization_id=body.organization_id,
        cidr=body.cidr,
        reference=body.reference,
        created_by=caller.name,
    )
    return AllocationRead.model_validate(allocation)


@router.delete(
    "/{allocation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Withdraw an allocation (global admins; refused while a scope lies in it)",
    responses={
        404: {"description": "No such allocation"},
        409: {"description": "A scope of the organisation still lies in it"},
    },
)
def remove_allocation(
    allocation_id: AllocationId, session: SessionDep, caller: GlobalAdmin
) -> Response:
    allocation = get_allocation_or_raise(
        session=session, allocation_id=allocation_id, visible_to=caller.organization_id
    )
    delete_allocation(session, allocation=allocation)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
