"""The imported advisories as readers see them: a page at a time by id, one with its products.

Advisories are public documents shared by every organisation: these reads take no visibility.
"""

from sqlmodel import Session, col, select

from cybermission.errors import NotFoundError
from cybermission.findings.models import Advisory, AdvisoryProduct
from cybermission.pagination import keyset_page


def list_advisories(
    *, session: Session, kev: bool | None = None, cursor: str | None = None, limit: int = 100
) -> tuple[list[Advisory], str | None]:
    """Advisories by id (``kev``: only those with, or without, a known exploited CVE), one
    keyset page at a time, with the next page's cursor (None on the last page)."""
    query = select(Advisory)
    if kev is not None:
        query = query.where(col(Advisory.kev) == kev)
    return keyset_page(
        session,
        query,
        sort="id",
        key=col(Advisory.id),
        ident=col(Advisory.id),
        value_of=lambda a: a.id,
        limit=limit,
        cursor=cursor,
    )


def get_advisory_or_raise(*, session: Session, advisory_id: str) -> Advisory:
    advisory = session.get(Advisory, advisory_id)
    if advisory is None:
        raise NotFoundError(f"no advisory with id {advisory_id!r}")
    return advisory


def list_advisory_products(*, session: Session, advisory_id: str) -> list[AdvisoryProduct]:
    """The products an advisory affects, by vendor then product."""
    query = (
        select(AdvisoryProduct)
        .where(AdvisoryProduct.advisory_id == advisory_id)
        .order_by(col(AdvisoryProduct.vendor), col(AdvisoryProduct.product))
    )
    return list(session.exec(query).all())
