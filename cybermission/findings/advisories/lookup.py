"""The public matcher: which advisories affect these identities, before any scan.

``cybermission advisories match`` and ``POST /api/v1/advisories/match`` answer here. The index of
every stored advisory takes seconds to build, so it is kept (for the API, the CLI and the scans)
and rebuilt only when the stored advisories changed (their count, last import time, KEV flags and
product rows).
"""

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func
from sqlmodel import Session, col, select

from cybermission.errors import ValidationError
from cybermission.findings.advisories import index_cache
from cybermission.findings.advisories.families import FamilyBook, family_book
from cybermission.findings.advisories.family_packs import organization_book
from cybermission.findings.advisories.matching import AdvisoryIndex, AdvisoryMatch, DeviceIdentity
from cybermission.findings.models import Advisory, AdvisoryProduct

MAX_IDENTITIES: Final = 1000
MAX_NAMES: Final = 20
MAX_TEXT: Final = 300

# Organisations that adopted family packs match with a book of their own: an index per book,
# the few most recently used kept.
_INDEXES_KEPT: Final = 4
_lock = threading.Lock()
_cached: list[tuple[tuple[Any, ...], FamilyBook, AdvisoryIndex]] = []


def _fingerprint(session: Session) -> tuple[Any, ...]:
    # The store (a process may serve several), the advisories and KEV flags, and the product
    # rows: an updated advisory's products are new rows with new random ids.
    count, last = session.exec(
        select(func.count(col(Advisory.id)), func.max(col(Advisory.imported_at)))
    ).one()
    kev = session.exec(select(func.count(col(Advisory.id))).where(col(Advisory.kev))).one()
    products, newest = session.exec(
        select(func.count(col(AdvisoryProduct.id)), func.max(col(AdvisoryProduct.id)))
    ).one()
    return str(session.get_bind().engine.url), count, last, kev, products, newest


def current_index(session: Session, book: FamilyBook | None = None) -> AdvisoryIndex:
    """The index of the stored advisories with ``book``'s families (the shipped families.yaml
    by default), rebuilt only when they changed."""
    book = book or family_book()
    fingerprint = _fingerprint(session)
    with _lock:
        for position, (seen, held, index) in enumerate(_cached):
            if held is book and seen == fingerprint:
                _cached.append(_cached.pop(position))
                return index
    # Another process may have built it already (every CLI scan is a new process).
    key = index_cache.cache_key(fingerprint, book)
    kept = index_cache.load(key)
    if kept is not None:
        index = kept
    else:
        index = AdvisoryIndex.load(session, book=book)
        index_cache.save(key, index)
    with _lock:
        _cached[:] = [c for c in _cached if c[1] is not book][-(_INDEXES_KEPT - 1) :]
        _cached.append((fingerprint, book, index))
    return index


def organization_index(session: Session, *, organization_id: str | None) -> AdvisoryIndex:
    """The index matching the organisation's devices: with the family packs it adopted."""
    return current_index(session, organization_book(session, organization_id=organization_id))


@dataclass(frozen=True, slots=True)
class IdentityMatches:
    identity: DeviceIdentity
    matches: list[AdvisoryMatch]


def identity_from(raw: object, where: str) -> DeviceIdentity:
    """A device identity from JSON: ``{"vendor": ..., "firmware": ..., "names": [...]}``."""
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where}: expected an object with vendor, firmware and names")
    unknown = set(raw) - {"vendor", "firmware", "names"}
    if unknown:
        raise ValidationError(f"{where}: unknown fields {sorted(unknown)}")
    vendor, firmware, names = raw.get("vendor"), raw.get("firmware"), raw.get("names")
    if not isinstance(vendor, str) or not vendor.strip() or len(vendor) > MAX_TEXT:
        raise ValidationError(f"{where}.vendor: expected a string of 1 to {MAX_TEXT} characters")
    if firmware is not None and (not isinstance(firmware, str) or len(firmware) > MAX_TEXT):
        raise ValidationError(f"{where}.firmware: expected a string or null")
    if (
        not isinstance(names, list)
        or not names
        or len(names) > MAX_NAMES
        or not all(isinstance(n, str) and n.strip() and len(n) <= MAX_TEXT for n in names)
    ):
        raise ValidationError(f"{where}.names: expected 1 to {MAX_NAMES} non-empty strings")
    return DeviceIdentity(vendor=vendor, firmware=firmware, names=tuple(names))


def match_identities(
    session: Session, identities: Sequence[DeviceIdentity], *, organization_id: str | None = None
) -> list[IdentityMatches]:
    """The advisories that affect each identity, the most certain match per advisory (with the
    family packs ``organization_id`` adopted)."""
    if len(identities) > MAX_IDENTITIES:
        raise ValidationError(f"at most {MAX_IDENTITIES} identities at once")
    index = organization_index(session, organization_id=organization_id)
    return [IdentityMatches(identity, index.match(identity)) for identity in identities]


def match_json(match: AdvisoryMatch) -> dict[str, Any]:
    """A match as the CLI and the API answer it."""
    return {
        "advisory_id": match.advisory_id,
        "title": match.title,
        "cves": list(match.cves),
        "cvss_score": match.cvss_score,
        "cvss_vector": match.cvss_vector,
        "kev": match.kev,
        "confidence": match.confidence.value,
        "reason": match.reason,
        "branch_path": list(match.branch_path),
        "product_id": match.product_id or None,
        "quote": match.quote,
    }


def results_json(results: Iterable[IdentityMatches]) -> list[dict[str, Any]]:
    return [
        {
            "identity": {
                "vendor": r.identity.vendor,
                "firmware": r.identity.firmware,
                "names": list(r.identity.names),
            },
            "matches": [match_json(m) for m in r.matches],
        }
        for r in results
    ]
