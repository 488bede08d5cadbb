"""Keyset pagination: opaque cursors holding the sort key and id of the last row of a page.

Keyset (not OFFSET) so that page 10,000 costs what page 1 costs and rows inserted meanwhile
neither repeat nor vanish. A cursor names the sort it was issued for; reusing it with another
sort is a 422, not a silently wrong page.
"""

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, tuple_
from sqlalchemy.sql.elements import SQLCoreOperations

from cybermission.errors import ValidationError

SortValue = datetime | float | int | str


def encode_cursor(sort: str, value: SortValue, ident: str) -> str:
    raw_value: Any = value.isoformat() if isinstance(value, datetime) else value
    kind = "dt" if isinstance(value, datetime) else "v"
    raw = json.dumps([sort, kind, raw_value, ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, sort: str) -> tuple[SortValue, str]:
    """The (value, id) of the last row of the previous page; 422 for anything we did not issue."""
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
