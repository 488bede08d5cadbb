"""Imported CISA ICS advisories (CSAF 2.0): a page at a time, and one with its affected products.

Advisories are public documents shared by every organisation: any reader sees them all.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlmodel import col, select

from api.deps import Reader, SessionDep
from api.pagination import after, decode_cursor, encode_cursor
from api.schemas import MAX_PAGE, AdvisoryDetail, AdvisoryProductRead, AdvisoryRead, Page
from cybermission.errors import NotFoundError
from cybermission.findings.models import Advisory, AdvisoryProduct

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
    query = select(Advisory)
    if kev is not None:
        query = query.where(col(Advisory.kev) == kev)
    if cursor is not None:
        value, last_id = decode_cursor(cursor, sort="id")
        query = query.where(
            after(col(Advisory.id), col(Advisory.id), value, last_id, descending=False)
        )
    rows = list(session.exec(query.order_by(col(Advisory.id)).limit(limit + 1)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor("id", rows[-1].id, rows[-1].id)
    return Page(items=[AdvisoryRead.model_validate(a) for a in rows], next_cursor=next_cursor)


@router.get(
    "/{advisory_id}",
    summary="One advisory with its affected products",
    responses={404: {"description": "No such advisory"}},
)
def get_advisory(advisory_id: AdvisoryId, session: SessionDep, caller: Reader) -> AdvisoryDetail:
    advisory = session.get(Advisory, advisory_id)
    if advisory is None:
        raise NotFoundError(f"no advisory with id {advisory_id!r}")
    products = session.exec(
        select(AdvisoryProduct)
        .where(AdvisoryProduct.advisory_id == advisory.id)
        .order_by(col(AdvisoryProduct.vendor), col(AdvisoryProduct.product))
    ).all()
    return AdvisoryDetail.model_validate(
        {
            **AdvisoryRead.model_validate(advisory).model_dump(),
            "products": [AdvisoryProductRead.model_validate(p) for p in products],
        }
    )
