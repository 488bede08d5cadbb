"""What the routes of every kind of shared pack do alike: an organisation's own admins decide,
everyone of the organisation reads its decisions (``cybermission/packs.py``)."""

from typing import Annotated, TypeVar

from fastapi import Path
from sqlmodel import Session

from api.errors import ForbiddenError
from api.schemas.packs import PackDecisionCreate, PackDecisionRead
from cybermission.auth.service import Principal
from cybermission.packs import PackBase, PackDecisionBase, Packs
from cybermission.sites.service import get_organization_or_raise

P = TypeVar("P", bound=PackBase)
D = TypeVar("D", bound=PackDecisionBase)

Ident = Annotated[str, Path(max_length=64)]
PackName = Annotated[str, Path(max_length=100)]
Version = Annotated[int, Path(ge=1, le=1_000_000)]


def organization_packs(
    session: Session, packs: Packs[P, D], *, organization_id: str, caller: Principal
) -> tuple[list[P], list[PackDecisionRead]]:
    """The versions that apply to the organisation and every decision it took (404 for
    another organisation's caller)."""
    get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=caller.organization_id
    )
    return packs.adopted(session, organization_id=organization_id), [
        PackDecisionRead.model_validate(d)
        for d in packs.list_decisions(session, organization_id=organization_id)
    ]


def decide_for_organization(
    session: Session,
    packs: Packs[P, D],
    *,
    organization_id: str,
    name: str,
    body: PackDecisionCreate,
    caller: Principal,
) -> PackDecisionRead:
    """Record the decision of the organisation's own admin (not even a global admin's)."""
    get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=caller.organization_id
    )
    if caller.organization_id != organization_id:
        raise ForbiddenError(f"only the organisation's own admins adopt or decline {packs.noun}s")
    row = packs.decide(
        session,
        organization_id=organization_id,
        pack_name=name,
        decision=body.decision,
        pinned_version=body.pinned_version,
        decided_by=caller.name,
    )
    return PackDecisionRead.model_validate(row)
