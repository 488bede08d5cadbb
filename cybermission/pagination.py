"""Keyset pagination: opaque cursors holding the sort key and id of the last row of a page.

Keyset (not OFFSET) so that page 10,000 costs what page 1 costs and rows inserted meanwhile
neither repeat nor vanish. A cursor names the sort it was issued for; reusing it with another
sort is a validation error, not a silently wrong page. The services' paged lists
(``list_devices``, ``list_placed_findings``, ...) read one page with :func:`keyset_page`.
"""

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, tuple_
from sqlalchemy.sql.elements import SQLCoreOperations
from sqlmodel import Session
from sqlmodel.sql.expression import SelectOfScalar

from cybermission.errors import ValidationError

SortValue = datetime | float | int | str


class Keyed(Protocol):
    """A row with a string primary key (the tie-breaker of every sort)."""

    @property
    def id(self) -> str: ...


RowT = TypeVar("RowT", bound=Keyed)


def encode_cursor(sort: str, value: SortValue, ident: str) -> str:
    raw_value: Any = value.isoformat() if isinstance(value, datetime) else value
    kind = "dt" if isinstance(value, datetime) else "v"
    raw = json.dumps([sort, kind, raw_value, ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, sort: str) -> tuple[SortValue, str]:
    """The (value, id) of the last row of the previous page; refuses anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        issued_for, kind, value, ident = json.loads(raw)
        if kind == "dt":
            value = datetime.fromisoformat(value)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValidationError("cursor: expected a cursor returned by a previous page") from exc
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValidationError("cursor: expected a cursor returned by a previous page")
    if issued_for != sort:
        raise ValidationError(f"cursor: issued for sort {issued_for!r}, not {sort!r}")
    if not isinstance(ident, str) or not isinstance(value, datetime | float | int | str):
        raise ValidationError("cursor: expected a cursor returned by a previous page")
    return value, ident


def after(
    key: SQLCoreOperations[Any],
    ident: SQLCoreOperations[Any],
    value: SortValue,
    last_id: str,
    *,
    descending: bool,
) -> ColumnElement[bool]:
    """Rows strictly after (value, last_id) in the order (key, id), both asc or both desc.

    A row-value comparison (SQL:1999; SQLite 3.15+, PostgreSQL) rather than ``k > v OR (k = v
    AND id > i)``: both planners turn it into one range scan of a (key, id) index.
    """
    row = tuple_(key, ident)
    bound = tuple_(value, last_id)
    return row < bound if descending else row > bound


def keyset_page(
    session: Session,
    query: SelectOfScalar[RowT],
    *,
    sort: str,
    key: SQLCoreOperations[Any],
    ident: SQLCoreOperations[Any],
    value_of: Callable[[RowT], SortValue],
    descending: bool = False,
    limit: int,
    cursor: str | None,
) -> tuple[list[RowT], str | None]:
    """One page of ``query`` in the order (``key``, ``ident``), and the next page's cursor.

    ``sort`` names the order in the cursor; ``value_of`` reads a row's sort key (what ``key``
    selects). The cursor is None on the last page. One row more than ``limit`` is read to know.
    """
    if cursor is not None:
        value, last_id = decode_cursor(cursor, sort=sort)
        query = query.where(after(key, ident, value, last_id, descending=descending))
    order = (key.desc(), ident.desc()) if descending else (key, ident)
    rows = list(session.exec(query.order_by(*order).limit(limit + 1)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(sort, value_of(rows[-1]), rows[-1].id)
