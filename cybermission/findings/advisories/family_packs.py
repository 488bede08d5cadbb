"""Shared advisory family data: the coordinator publishes versioned family packs (families.yaml's
format), each organisation's admins adopt one (optionally pinned to a version) or decline it, and
advisory matching of that organisation's devices uses the shipped families.yaml with the adopted
packs laid over it (a family of the same vendor and name replaces the shipped one).

Versions, decisions and counts are every kind of pack's (``cybermission/packs.py``); this holds
what is a family pack's own: its document, checked when published, and the book it makes.
"""

import logging
import threading
from collections.abc import Sequence
from typing import Final

from sqlmodel import Session

from cybermission.errors import ValidationError
from cybermission.findings.advisories.families import (
    FamilyBook,
    family_book,
    overlay,
    parse_families,
)
from cybermission.findings.models import FamilyPack, FamilyPackDecision
from cybermission.packs import Packs

logger = logging.getLogger(__name__)

FAMILY_PACKS: Final = Packs(noun="family pack", pack=FamilyPack, decision=FamilyPackDecision)
MAX_DOCUMENT_CHARS: Final = 500_000
MAX_FAMILIES: Final = 2000

_lock = threading.Lock()
# Books by the ids of the versions laid over the shipped file (a version is never edited).
_books: dict[tuple[str, ...], FamilyBook] = {}
_BOOKS_KEPT: Final = 32


def _source(name: str, version: int) -> str:
    return f"{name}@{version}"


def publish_family_pack(
    session: Session, *, name: str, title: str, notes: str, document: str, published_by: str
) -> FamilyPack:
    """Store the next version of family pack ``name``; the document must read as families.yaml
    does (422 naming the entry otherwise; nothing is stored)."""
    version = FAMILY_PACKS.next_version(session, name)
    if len(document) > MAX_DOCUMENT_CHARS:
        raise ValidationError(f"document: at most {MAX_DOCUMENT_CHARS} characters")
    try:
        book = parse_families(document, source=_source(name, version), known=family_book())
    except ValueError as exc:
        raise ValidationError(f"document: {exc}") from exc
    if len(book.families) > MAX_FAMILIES:
        raise ValidationError(f"document: at most {MAX_FAMILIES} families")
    pack = FamilyPack(
        name=name,
        version=version,
        title=title,
        notes=notes,
        document=document,
        published_by=published_by[:100],
    )
    return FAMILY_PACKS.store(session, pack)


def family_names(pack: FamilyPack) -> list[str]:
    """The families a stored version holds, in its order."""
    return [f.name for f in _parse(pack).families]


def _parse(pack: FamilyPack) -> FamilyBook:
    # Checked when it was published: a stored version always reads.
    return parse_families(
        pack.document, source=_source(pack.name, pack.version), known=family_book()
    )


def book_with(packs: Sequence[FamilyPack]) -> FamilyBook:
    """The shipped families with ``packs`` laid over them in order (the shipped book alone
    when there are none)."""
    if not packs:
        return family_book()
    key = tuple(p.id for p in packs)
    with _lock:
        found = _books.get(key)
    if found is not None:
        return found
    book = family_book()
    for pack in packs:
        try:
            book = overlay(book, _parse(pack))
        except ValueError:
            # Checked when published: only a stricter reader since can refuse it. Matching goes
            # on without it rather than stopping the organisation's scans.
            logger.exception(
                "family pack unreadable: left out",
                extra={"pack": pack.name, "version": pack.version},
            )
    with _lock:
        if len(_books) >= _BOOKS_KEPT:
            _books.pop(next(iter(_books)))
        _books[key] = book
    return book


def organization_book(session: Session, *, organization_id: str | None) -> FamilyBook:
    """The family knowledge matching uses for the organisation's devices: the shipped file with
    the family packs it adopted (each at its pinned version, or the latest) laid over it."""
    return book_with(FAMILY_PACKS.adopted(session, organization_id=organization_id))
