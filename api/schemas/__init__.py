"""Request and response bodies of the HTTP API, one module per resource; the shared pieces here.

One convention (CONVENTIONS.md, the I/O ladder):

- ``<Thing>Create`` and ``<Thing>Update`` are request bodies (POST, PATCH) on
  :class:`RequestModel`: closed (an unknown field is refused) and bounded (every string, list and
  number has the limit one request may ask for). An Update's fields are all optional; only the
  fields sent change; on :class:`UpdateModel`, ``null`` clears only the fields it declares
  clearable.
- ``<Thing>Read`` is a stored row as the API answers it, on :class:`ReadModel`, built with
  ``<Thing>Read.model_validate(row)``. A fuller answer about one row is ``<Thing><Variant>Read``
  (``DeviceDetailRead``: the device with its addresses, services and changes). A list paged by
  cursor is ``Page[<Thing>Read]``; a bounded list is a JSON array of ``<Thing>Read``.
- ``<Thing>Base`` is the core's (``ScopeBase``, ``ScheduleBase``): a Create is validated into it
  before the service stores it. The api keeps no Base of its own on purpose: a request's bounds
  are not a stored row's (a scope written by the CLI may hold more networks than one request may
  send), and a Read that inherited them would refuse such a row on its way out.

Field names are the wire's: they never change with a class name.
"""

from typing import Annotated, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationInfo, field_validator

from api.boundary import check_tree, nfc_tree
from cybermission.sites.service import SLUG_PATTERN

MAX_PAGE = 500

T = TypeVar("T")

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# The core's one slug rule (organisations and sites), checked here so a bad slug is a 422 naming
# the field before any store is touched.
Slug = Annotated[str, StringConstraints(strip_whitespace=True, pattern=SLUG_PATTERN)]


class RequestModel(BaseModel):
    """A request body: fields it does not declare are refused, not ignored, and no string in it
    (nested ones and dict keys included) may carry what :mod:`api.boundary` refuses (NUL,
    control and bidirectional characters): a 422 naming the field, on every store."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _nfc(cls, value: object) -> object:
        # Before the schema's bounds: NFC may lengthen text (U+0958 is two code points in NFC),
        # and the length the column holds is the normalised one.
        return nfc_tree(value)

    @field_validator("*", mode="after")
    @classmethod
    def _text_at_the_boundary(cls, value: object) -> object:
        check_tree(value)
        return value


class UpdateModel(RequestModel):
    """A PATCH body: fields left out stay as they are; ``null`` clears only the fields named in
    ``clearable`` and is refused elsewhere with a 422 naming the field (a null there would be a
    value the row cannot hold, not a change)."""

    clearable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _null_only_where_clearable(cls, value: object, info: ValidationInfo) -> object:
        if value is None and info.field_name not in cls.clearable:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value


class ReadModel(BaseModel):
    """An answer, read from a row's attributes (``model_validate(row)``)."""

    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``?cursor=`` for the next one."""

    items: list[T]
    next_cursor: str | None = None
