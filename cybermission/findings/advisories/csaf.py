"""Read CSAF 2.0 advisories (OASIS CSAF v2.0 §3.2) into plain records, checking what we rely on.

A document that lacks what matching needs (``document.tracking.id``, a ``product_tree`` with
branches) raises :class:`ValidationError` naming the field; nothing is guessed.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cybermission.errors import ValidationError
from cybermission.findings.advisories.mentions import document_texts, passages

# Branch categories (CSAF v2.0 §3.1.2.3.3) that name a product, and those that name its versions.
PRODUCT_CATEGORIES = frozenset({"product_family", "product_name"})
VERSION_CATEGORIES = frozenset({"product_version", "product_version_range"})
MAX_BRANCH_DEPTH = 12
MAX_PRODUCTS = 5000


@dataclass(slots=True)
class ProductRecord:
    """One leaf of the product tree: what it names and the branch path that leads to it."""

    product_id: str
    vendor: str
    product: str
    version: str | None
    branch_path: list[str]
    cves: list[str] = field(default_factory=list)
    cvss_score: float | None = None
    cvss_vector: str | None = None


@dataclass(slots=True)
class AdvisoryRecord:
    """One advisory as read from its CSAF document."""

    id: str
    title: str
    revision: str
    published_at: datetime | None
    updated_at: datetime | None
    cves: list[str]
    cvss_score: float | None
    cvss_vector: str | None
    products: list[ProductRecord]
    # Sentences of the title, notes and remediations that name models (mentions.py).
    mentions: list[str] = field(default_factory=list)


def _text(value: object, where: str, *, required: bool = True) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if required:
        raise ValidationError(f"{where}: expected a non-empty string, got {value!r}"[:300])
    return ""


def _moment(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(_text(value, where).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"{where}: expected an ISO 8601 date-time, got {value!r}") from exc
    if moment.tzinfo is None:
        raise ValidationError(f"{where}: expected a date-time with its UTC offset")
    return moment


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{where}: expected an object")
    return value


def _list(value: object, where: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValidationError(f"{where}: expected a list")
    return value


def _walk(
    branches: Sequence[Any],
    path: list[tuple[str, str]],
    where: str,
    out: list[ProductRecord],
) -> None:
    if len(path) > MAX_BRANCH_DEPTH:
        raise ValidationError(f"{where}: product tree deeper than {MAX_BRANCH_DEPTH} branches")
    for index, raw in enumerate(branches):
        here = f"{where}[{index}]"
        branch = _mapping(raw, here)
        category = _text(branch.get("category"), f"{here}.category")
        name = _text(branch.get("name"), f"{here}.name")
        step = [*path, (category, name)]
        product = branch.get("product")
        if product is not None:
            leaf = _mapping(product, f"{here}.product")
            vendors = [n for c, n in step if c == "vendor"]
            names = [n for c, n in step if c in PRODUCT_CATEGORIES]
            versions = [n for c, n in step if c in VERSION_CATEGORIES]
            out.append(
                ProductRecord(
                    product_id=_text(leaf.get("product_id"), f"{here}.product.product_id"),
                    vendor=vendors[0] if vendors else "",
                    product=" ".join(names) or _text(leaf.get("name"), f"{here}.product.name"),
                    version=versions[-1] if versions else None,
                    branch_path=[n for _, n in step],
                )
            )
            if len(out) > MAX_PRODUCTS:
                raise ValidationError(f"{where}: more than {MAX_PRODUCTS} products")
        _walk(_list(branch.get("branches"), f"{here}.branches"), step, f"{here}.branches", out)


def _score(entry: Mapping[str, Any], where: str) -> tuple[float, str | None] | None:
    for key in ("cvss_v3", "cvss_v2"):
        cvss = entry.get(key)
        if cvss is None:
            continue
        cvss = _mapping(cvss, f"{where}.{key}")
        base = cvss.get("baseScore")
        if isinstance(base, bool) or not isinstance(base, int | float) or not 0 <= base <= 10:
            raise ValidationError(f"{where}.{key}.baseScore: expected a number from 0 to 10")
        vector = cvss.get("vectorString")
        return float(base), vector if isinstance(vector, str) else None
    return None


def parse_csaf(document: object) -> AdvisoryRecord:
    """An advisory record from a decoded CSAF 2.0 JSON document."""
    doc = _mapping(document, "document")
    meta = _mapping(doc.get("document"), "document")
    csaf_version = meta.get("csaf_version")
    if csaf_version != "2.0":
        raise ValidationError(f"document.csaf_version: expected '2.0', got {csaf_version!r}")
    tracking = _mapping(meta.get("tracking"), "document.tracking")
    advisory_id = _text(tracking.get("id"), "document.tracking.id")[:64]
    tree = _mapping(doc.get("product_tree"), "product_tree")
    products: list[ProductRecord] = []
    _walk(
        _list(tree.get("branches"), "product_tree.branches"), [], "product_tree.branches", products
    )
    if not products:
        raise ValidationError("product_tree.branches: no product in the tree")
    by_id = {p.product_id: p for p in products}

    cves: list[str] = []
    best: tuple[float, str | None] | None = None
    affected_any: set[str] = set()
    scored_any: set[str] = set()
    for index, raw in enumerate(_list(doc.get("vulnerabilities"), "vulnerabilities")):
        here = f"vulnerabilities[{index}]"
        vulnerability = _mapping(raw, here)
        cve = vulnerability.get("cve")
        cve = cve.strip() if isinstance(cve, str) and cve.strip() else None
        if cve and cve not in cves:
            cves.append(cve)
        status = _mapping(vulnerability.get("product_status") or {}, f"{here}.product_status")
        affected = {
            str(pid)
            for key in ("known_affected", "first_affected", "last_affected")
            for pid in _list(status.get(key), f"{here}.product_status.{key}")
        }
        for score_index, raw_score in enumerate(
            _list(vulnerability.get("scores"), f"{here}.scores")
        ):
            where = f"{here}.scores[{score_index}]"
            entry = _mapping(raw_score, where)
            scored = _score(entry, where)
            if scored is None:
                continue
            if best is None or scored[0] > best[0]:
                best = scored
            for pid in _list(entry.get("products"), f"{where}.products"):
                product = by_id.get(str(pid))
                if product is not None and (
                    product.cvss_score is None or scored[0] > product.cvss_score
                ):
                    product.cvss_score, product.cvss_vector = scored
                scored_any.add(str(pid))
        affected_any |= affected
        for pid in affected or scored_any:
            product = by_id.get(pid)
            if product is not None and cve and cve not in product.cves:
                product.cves.append(cve)

    # Only affected products are matched: trees also list fixed and not-affected versions
    # (CSAF v2.0 §3.2.3.9). Old documents without product_status fall back to the scored ones.
    keep = affected_any or scored_any
    if keep:
        products = [p for p in products if p.product_id in keep]
    return AdvisoryRecord(
        id=advisory_id,
        title=_text(meta.get("title"), "document.title")[:500],
        revision=_text(tracking.get("version"), "document.tracking.version", required=False)[:32],
        published_at=_moment(tracking.get("initial_release_date"), "tracking.initial_release_date"),
        updated_at=_moment(tracking.get("current_release_date"), "tracking.current_release_date"),
        cves=cves,
        cvss_score=best[0] if best else None,
        cvss_vector=best[1] if best else None,
        products=products,
        mentions=passages(document_texts(doc)),
    )
