"""Import CSAF advisories (a file, a folder or an archive) and the CISA KEV catalogue.

Re-importing is idempotent: an advisory whose ``current_release_date`` and version did not change
is left alone, an updated one replaces the stored one and its products. A document that does not
read as CSAF 2.0 is reported (``source:member: what``) and skipped; every document is validated
completely before anything is written, so nothing is ever half-written.
"""

import json
import logging
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from sqlalchemy import delete
from sqlmodel import Session, col, select

from cybermission.errors import ValidationError
from cybermission.findings.advisories.csaf import AdvisoryRecord, parse_csaf
from cybermission.findings.advisories.normalise import vendor_key
from cybermission.findings.models import Advisory, AdvisoryProduct, KnownExploited

logger = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES: Final = 20 * 1024 * 1024
ARCHIVE_SUFFIXES: Final = (".tar", ".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".zip")
_CVE_RE: Final = re.compile(r"^CVE-\d{4}-\d{4,}$")


@dataclass(slots=True)
class ImportReport:
    """What an import did; ``errors`` are ``source: what`` lines for documents skipped."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    products: int = 0
    errors: list[str] = field(default_factory=list)
    # Ids of the advisories created or updated: what the inventory is matched against again.
    changed: list[str] = field(default_factory=list)

    @property
    def read(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.errors)


def _is_archive(path: Path) -> bool:
    return path.name.casefold().endswith(ARCHIVE_SUFFIXES)


def iter_documents(path: Path) -> Iterator[tuple[str, bytes | ValidationError]]:
    """``(where, raw JSON bytes)`` for every ``.json`` in a file, folder or archive, streamed.

    A member that cannot be read comes out as ``(where, error)``; a source that does not exist
    or is not an archive raises :class:`ValidationError`.
    """
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and (child.suffix.casefold() == ".json" or _is_archive(child)):
                yield from iter_documents(child)
        return
    if not path.is_file():
        raise ValidationError(f"{path}: no such file or folder")
    if path.name.casefold().endswith(".zip"):
        yield from _zip_documents(path)
    elif _is_archive(path):
        yield from _tar_documents(path)
    else:
        yield str(path), _read_file(path)


def _read_file(path: Path) -> bytes | ValidationError:
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            return ValidationError(f"larger than {MAX_DOCUMENT_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        return ValidationError(f"cannot read: {exc.strerror or exc}")


def _tar_documents(path: Path) -> Iterator[tuple[str, bytes | ValidationError]]:
    try:
        # Stream mode ("r|*"): members are read in order, nothing is extracted to disk.
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                if not member.isfile() or not member.name.casefold().endswith(".json"):
                    continue
                where = f"{path}:{member.name}"
                if member.size > MAX_DOCUMENT_BYTES:
                    yield where, ValidationError(f"larger than {MAX_DOCUMENT_BYTES} bytes")
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                yield where, handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValidationError(f"{path}: not a readable archive ({exc})") from exc


def _zip_documents(path: Path) -> Iterator[tuple[str, bytes | ValidationError]]:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.casefold().endswith(".json"):
                    continue
                where = f"{path}:{info.filename}"
                if info.file_size > MAX_DOCUMENT_BYTES:
                    yield where, ValidationError(f"larger than {MAX_DOCUMENT_BYTES} bytes")
                    continue
                yield where, archive.read(info)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValidationError(f"{path}: not a readable zip archive ({exc})") from exc


def read_advisory(raw: bytes) -> AdvisoryRecord:
    """Decode and validate one CSAF document."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"not JSON ({exc})") from exc
    return parse_csaf(document)


def import_advisories(session: Session, path: Path, *, now: datetime) -> ImportReport:
    """Import every CSAF document under ``path`` in the caller's transaction."""
    report = ImportReport()
    stored = {
        row[0]: (row[1], row[2])
        for row in session.exec(select(Advisory.id, Advisory.updated_at, Advisory.revision))
    }
    known_exploited = set(session.exec(select(KnownExploited.cve_id)))
    seen_in_this_import: set[str] = set()
    for where, raw in iter_documents(path):
        if isinstance(raw, ValidationError):
            report.errors.append(f"{where}: {raw}")
            continue
        try:
            record = read_advisory(raw)
        except ValidationError as exc:
            report.errors.append(f"{where}: {exc}")
            continue
        previous = stored.get(record.id)
        if previous is not None:
            updated_at, revision = previous
            if (updated_at, revision) == (record.updated_at, record.revision) or (
                updated_at is not None
                and record.updated_at is not None
                and record.updated_at < updated_at
            ):
                report.unchanged += 1  # the same release, or an older one than stored
                continue
            session.exec(
                delete(AdvisoryProduct).where(col(AdvisoryProduct.advisory_id) == record.id)
            )
            advisory = session.get(Advisory, record.id)
            report.updated += 1
        else:
            advisory = None
            report.created += 1
        if advisory is None:
            advisory = Advisory(id=record.id, title=record.title)
        advisory.title = record.title
        advisory.cves = list(record.cves)
        advisory.cvss_score = record.cvss_score
        advisory.cvss_vector = record.cvss_vector
        advisory.mentions = list(record.mentions)
        advisory.published_at = record.published_at
        advisory.updated_at = record.updated_at
        advisory.revision = record.revision
        advisory.kev = any(cve in known_exploited for cve in record.cves)
        advisory.source = where[-500:]
        advisory.imported_at = now
        session.add(advisory)
        if record.id in seen_in_this_import:
            session.flush()  # the delete above must see this import's earlier rows
        session.add_all(
            AdvisoryProduct(
                advisory_id=record.id,
                product_id=p.product_id[:200],
                vendor=p.vendor[:300],
                vendor_key=vendor_key(p.vendor)[:300],
                product=p.product[:500],
                version=p.version[:500] if p.version else None,
                branch_path=[step[:300] for step in p.branch_path],
                cves=list(p.cves),
                cvss_score=p.cvss_score,
                cvss_vector=p.cvss_vector,
            )
            for p in record.products
        )
        report.products += len(record.products)
        if record.id not in report.changed:
            report.changed.append(record.id)
        stored[record.id] = (record.updated_at, record.revision)
        seen_in_this_import.add(record.id)
    session.flush()
    logger.info(
        "advisories imported",
        extra={
            "source": str(path),
            "advisories_created": report.created,
            "advisories_updated": report.updated,
            "advisories_unchanged": report.unchanged,
            "advisory_errors": len(report.errors),
        },
    )
    return report


@dataclass(slots=True)
class KevReport:
    """What a KEV import did."""

    entries: int
    added: int
    advisories_flagged: int
    # Ids of the advisories whose KEV flag changed: their findings are scored again.
    changed: list[str] = field(default_factory=list)


def import_kev(session: Session, path: Path, *, now: datetime) -> KevReport:
    """Import CISA's Known Exploited Vulnerabilities catalogue (its JSON feed format) and flag
    every stored advisory that names one of its CVEs. All or nothing: a bad file writes nothing.
    """
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("vulnerabilities"), list):
        raise ValidationError(
            f"{path}: expected CISA's KEV JSON (an object with a 'vulnerabilities' list)"
        )
    entries: dict[str, KnownExploited] = {}
    for index, item in enumerate(document["vulnerabilities"]):
        cve = item.get("cveID") if isinstance(item, dict) else None
        if not isinstance(cve, str) or not _CVE_RE.match(cve.strip()):
            raise ValidationError(
                f"{path}: vulnerabilities[{index}].cveID: expected CVE-YYYY-NNNN, got {cve!r}"
            )
        entries[cve.strip()] = KnownExploited(
            cve_id=cve.strip(),
            vendor=str(item.get("vendorProject") or "")[:300],
            product=str(item.get("product") or "")[:300],
            date_added=str(item.get("dateAdded") or "")[:32],
            imported_at=now,
        )
    existing = set(session.exec(select(KnownExploited.cve_id)))
    for entry in entries.values():
        session.merge(entry)
    session.flush()
    known = existing | set(entries)
    flagged = 0
    changed: list[str] = []
    for advisory in session.exec(select(Advisory)):
        kev = any(cve in known for cve in advisory.cves)
        if kev != advisory.kev:
            advisory.kev = kev
            session.add(advisory)
            changed.append(advisory.id)
        flagged += kev
    session.flush()
    report = KevReport(
        entries=len(entries),
        added=len(set(entries) - existing),
        advisories_flagged=flagged,
        changed=changed,
    )
    logger.info(
        "kev imported",
        extra={"kev_entries": report.entries, "advisories_flagged": report.advisories_flagged},
    )
    return report
