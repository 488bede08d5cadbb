"""Imported CISA ICS advisories (CSAF 2.0): a page at a time, and one with its affected products.

Advisories are public documents shared by every organisation: any reader sees them all.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Reader, SessionDep
from api.schemas import MAX_PAGE, Page
from api.schemas.advisories import (
    AdvisoryDetailRead,
    AdvisoryMatchCreate,
    AdvisoryProductRead,
    AdvisoryRead,
    IdentityMatchesRead,
)
from cybermission.findings.advisories.catalogue import (
    get_advisory_or_raise,
    list_advisories,
    list_advisory_products,
)
from cybermission.findings.advisories.lookup import match_identities, results_json
from cybermission.findings.advisories.matching import DeviceIdentity

router = APIRouter(prefix="/advisories", tags=["advisories"])

AdvisoryId = Annotated[str, Path(max_length=64)]


@router.get("", summary="Advisories by id, one page at a time")
def get_advisories(
    session: SessionDep,
    caller: Reader,
    kev: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[AdvisoryRead]:
    rows, next_cursor = list_advisories(session=session, kev=kev, cursor=cursor, limit=limit)
    return Page(items=[AdvisoryRead.model_validate(a) for a in rows], next_cursor=next_cursor)


@router.post(
    "/match",
    summary="Which advisories affect these devices (before any scan)",
    operation_id="matchAdvisories",
    responses={422: {"description": "A malformed identity, or more than 1,000"}},
)
def post_match(
    body: AdvisoryMatchCreate, session: SessionDep, caller: Reader
) -> list[IdentityMatchesRead]:
    identities = [
        DeviceIdentity(vendor=d.vendor, firmware=d.firmware, names=tuple(d.names))
        for d in body.devices
    ]
    # With the family packs the caller's organisation adopted, as its scans match.
    results = match_identities(session, identities, organization_id=caller.organization_id)
    return [IdentityMatchesRead.model_validate(r) for r in results_json(results)]


@router.get(
    "/{advisory_id}",
    summary="One advisory with its affected products",
    responses={404: {"description": "No such advisory"}},
)
def get_advisory(
    advisory_id: AdvisoryId, session: SessionDep, caller: Reader
) -> AdvisoryDetailRead:
    advisory = get_advisory_or_raise(session=session, advisory_id=advisory_id)
    products = list_advisory_products(session=session, advisory_id=advisory.id)
    return AdvisoryDetailRead.model_validate(
        {
            **AdvisoryRead.model_validate(advisory).model_dump(),
            "products": [AdvisoryProductRead.model_validate(p) for p in products],
        }
    )
