"""Organisation scoping: which rows a caller may see, as a parameter every read takes.

``visible_to`` is the caller's organisation id, or None for a global caller (a global token, the
CLI), who sees every row. An organisation sees its own rows only; rows with no organisation
(devices outside every placed scope, global scopes) are seen by global callers only. A row of
another organisation reads as not found: a partner must not learn that an id exists elsewhere.
"""

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, true
from sqlalchemy.sql.elements import SQLCoreOperations
from sqlmodel import Session

from cybermission.errors import NotFoundError


class Owned(Protocol):
    """A row that names its organisation (None: a row of no organisation)."""

    @property
    def organization_id(self) -> str | None: ...


RowT = TypeVar("RowT")
OwnedT = TypeVar("OwnedT", bound=Owned)


def sees(visible_to: str | None, organization_id: str | None) -> bool:
    """Whether a caller of ``visible_to`` sees a row of ``organization_id``."""
    return visible_to is None or visible_to == organization_id


def visible(column: SQLCoreOperations[Any], visible_to: str | None) -> ColumnElement[bool]:
    """A WHERE clause limiting ``column`` (an organisation id) to what ``visible_to`` sees."""
    if visible_to is None:
        return true()
    return column == visible_to


def get_visible_or_raise(
    session: Session,
    model: type[RowT],
    ident: str,
    *,
    visible_to: str | None,
    what: str,
    organization_of: Callable[[RowT], str | None],
) -> RowT:
    """The row ``ident`` of ``model`` if ``visible_to`` sees it; otherwise, and when it does
    not exist, the same :class:`NotFoundError` (no hint that it exists elsewhere)."""
    row = session.get(model, ident)
    if row is None or not sees(visible_to, organization_of(row)):
        raise NotFoundError(f"no {what} with id {ident!r}")
    return row


def _own_organization(row: Owned) -> str | None:
    return row.organization_id


def get_owned_or_raise(
    session: Session, model: type[OwnedT], ident: str, *, visible_to: str | None, what: str
) -> OwnedT:
    """:func:`get_visible_or_raise` for a row that names its organisation itself."""
    return get_visible_or_raise(
        session,
        model,
        ident,
        visible_to=visible_to,
        what=what,
        organization_of=_own_organization,
    )
