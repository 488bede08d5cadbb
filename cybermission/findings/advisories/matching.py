"""Match devices against imported advisories by vendor, product and version, with a confidence.

A device matches an affected product of an advisory when:

1. **vendor**: the canonical vendor keys are equal (aliases folded: "Telemecanique" and
   "Schneider Electric Software, LLC" are Schneider Electric; "Allen-Bradley" is Rockwell);
2. **product**, the stronger first:
   - *part number*: a device string, compacted (case-folded, spaces and dashes removed), equals a
     part number the product names ("6ES7315-2EH14-0AB0") or starts with one of its patterns
     ("BMXP34*" against "BMX P34 2020");
   - *model name*: a run of words of a device string appears in the product name, and the run
     names a model on its own (letters and digits mixed, as "M340", or two words, as "S7-300");
3. **version**: the device firmware is inside the product's version range (``vers:`` or free
   text), or the advisory says all versions.

Confidence: **high** = part number and a version range that contains the firmware; **medium** =
part number with "all versions", or model name with the firmware in range or all versions;
**low** = vendor and product match but the version could not be compared (no firmware on the
device, or a range such as a serial-number interval that is not a version). Every match carries
the reason and the branch path of the product tree that matched.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from sqlmodel import Session, select

from cybermission.findings.advisories.normalise import (
    VersionOutcome,
    VersionSpec,
    chunks,
    compact,
    expand_product_name,
    families,
    is_model_chunk,
    parse_version,
    parse_version_spec,
    vendor_key,
)
from cybermission.findings.models import Advisory, AdvisoryProduct

# A version constraint written inside a product name ("S7-1200 CPU family < V4.x").
_NAME_RANGE_RE: Final = re.compile(r"(<=|>=|<|>)\s*v?\d+(?:\.(?:\d+|x))*", re.IGNORECASE)
_PAREN_RE: Final = re.compile(r"\(([^()]*)\)")
# A part number: letters and digits, at least six once compacted ("BMXP342020", "6ES73152EH140AB0").
_MIN_PART_CHARS: Final = 6
_MIN_PATTERN_CHARS: Final = 4


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


_RANK: Final = {Confidence.HIGH: 3, Confidence.MEDIUM: 2, Confidence.LOW: 1}


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What the inventory knows of a device: vendor, firmware, and every string naming it."""

    vendor: str | None
    firmware: str | None
    names: tuple[str, ...]  # product, model, product code, order number, product name...


@dataclass(frozen=True, slots=True)
class AdvisoryMatch:
    """One advisory that applies to a device, with why and how sure."""

    advisory_id: str
    title: str
    cves: tuple[str, ...]
    cvss_score: float | None
    cvss_vector: str | None
    kev: bool
    branch_path: tuple[str, ...]
    product_id: str
    confidence: Confidence
    reason: str


@dataclass(frozen=True, slots=True)
class _Entry:
    advisory_id: str
    product_id: str
    product: str
    branch_path: tuple[str, ...]
    chunks: tuple[str, ...]
    chunk_set: frozenset[str]
    # Words that name one model ("r04cpu", "m340"), from the name and its expansions.
    model_chunks: frozenset[str]
    parts: frozenset[str]
    patterns: tuple[str, ...]
    spec: VersionSpec
    name_spec: VersionSpec | None
    cves: tuple[str, ...]
    cvss_score: float | None
    cvss_vector: str | None


def _parts_and_patterns(name: str) -> tuple[frozenset[str], tuple[str, ...]]:
    parts: set[str] = set()
    patterns: list[str] = []
    # Placeholders for a model digit ("CJ2M-CPU□□", "CJ2M-CPU[][]") are patterns too.
    globbed = name.replace("□", "*").replace("[]", "*")
    for token in globbed.split():
        if "*" in token:
            prefix = compact(token.split("*", 1)[0])
            if len(prefix) >= _MIN_PATTERN_CHARS and prefix not in patterns:
                patterns.append(prefix)
    for group in _PAREN_RE.findall(name):
        for item in re.split(r"[,;/]|\bor\b|\band\b", group):
            item = re.sub(
                r"(?i)^\s*(part numbers?|p/?n|order (no\.?|numbers?)|mlfb)\s*:?", "", item
            )
            if "*" in item:
                continue
            candidate = compact(item)
            digits = sum(c.isdigit() for c in candidate)
            if (
                len(candidate) >= _MIN_PART_CHARS
                and digits >= 0.3 * len(candidate)
                and any(c.isalpha() for c in candidate)
                and len(item.split()) <= 3
            ):
                parts.add(candidate)
    return frozenset(parts), tuple(patterns)


@dataclass(slots=True)
class AdvisoryIndex:
    """Affected products by vendor key, with an inverted index on model words and patterns."""

    advisories: dict[str, Advisory] = field(default_factory=dict)
    _by_vendor: dict[str, list[_Entry]] = field(default_factory=dict)
    _by_chunk: dict[str, dict[str, list[_Entry]]] = field(default_factory=dict)
    _by_pattern: dict[str, dict[str, list[_Entry]]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, advisories: Iterable[Advisory], products: Iterable[AdvisoryProduct]
    ) -> "AdvisoryIndex":
        index = cls(advisories={a.id: a for a in advisories})
        for product in products:
            index.add(product)
        return index

    @classmethod
    def load(cls, session: Session) -> "AdvisoryIndex":
        """Every stored advisory and affected product (about 16,000 for CISA's 2017-2024 set)."""
        return cls.build(session.exec(select(Advisory)), session.exec(select(AdvisoryProduct)))

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._by_vendor.values())

    def add(self, product: AdvisoryProduct) -> None:
        key = product.vendor_key or vendor_key(product.vendor)
        if not key:
            return
        words = chunks(product.product)
        parts, patterns = _parts_and_patterns(product.product)
        in_name = _NAME_RANGE_RE.search(product.product)
        # Sibling lists ("R04/08/16/32/120(EN)CPU") name each sibling as a word of its own.
        expanded: set[str] = set()
        for variant in expand_product_name(product.product):
            expanded.update(chunks(variant))
            expanded.add(compact(variant))
            for pattern in _parts_and_patterns(variant)[1]:
                if pattern not in patterns:
                    patterns = (*patterns, pattern)
        outside_range = chunks(_NAME_RANGE_RE.sub(" ", product.product))
        entry = _Entry(
            advisory_id=product.advisory_id,
            product_id=product.product_id,
            product=product.product,
            branch_path=tuple(product.branch_path),
            chunks=words,
            chunk_set=frozenset(words) | expanded,
            model_chunks=frozenset(
                w for w in (*outside_range, *expanded) if is_model_chunk(w) and "*" not in w
            ),
            parts=parts,
            patterns=patterns,
            spec=parse_version_spec(product.version),
            name_spec=parse_version_spec(in_name.group(0)) if in_name else None,
            cves=tuple(product.cves),
            cvss_score=product.cvss_score,
            cvss_vector=product.cvss_vector,
        )
        self._by_vendor.setdefault(key, []).append(entry)
        by_chunk = self._by_chunk.setdefault(key, {})
        for word in entry.chunk_set:
            by_chunk.setdefault(word, []).append(entry)
        by_pattern = self._by_pattern.setdefault(key, {})
        for part in (*parts, *patterns):
            by_pattern.setdefault(part[:_MIN_PATTERN_CHARS], []).append(entry)

    def match(self, device: DeviceIdentity) -> list[AdvisoryMatch]:
        """The advisories that apply to ``device``: one match per advisory, the most certain."""
        key = vendor_key(device.vendor)
        if not key or key not in self._by_vendor:
            return []
        given = tuple(n for n in device.names if n and n.strip())
        implied = families(given)
        names = [*given, *implied]
        compacts = {compact(n) for n in names} - {""}
        name_chunks = [chunks(n) for n in names]
        # Candidates come through words that name models (or numbers), and through the words of
        # implied families that carry none ("NJ/NX Series").
        # Short numbers ("1", "20") appear in thousands of product names and select nothing.
        device_words = {
            w
            for words in name_chunks
            for w in words
            if is_model_chunk(w) or (w.isdigit() and len(w) >= 3)
        }
        for family in implied:
            words = chunks(family)
            device_words.update(
                [w for w in words if any(c.isdigit() for c in w)] or [max(words, key=len)]
            )
        candidates: dict[int, _Entry] = {}
        by_chunk = self._by_chunk.get(key, {})
        for word in device_words:
            for entry in by_chunk.get(word, ()):
                candidates[id(entry)] = entry
        by_pattern = self._by_pattern.get(key, {})
        for value in compacts:
            for entry in by_pattern.get(value[:_MIN_PATTERN_CHARS], ()):
                candidates[id(entry)] = entry
        version = parse_version(device.firmware)
        view = _DeviceView.of(compacts, name_chunks, implied)
        best: dict[str, AdvisoryMatch] = {}
        for entry in candidates.values():
            found = _judge(entry, view, version, device.firmware)
            if found is None:
                continue
            confidence, reason = found
            current = best.get(entry.advisory_id)
            if current is not None and _RANK[current.confidence] >= _RANK[confidence]:
                continue
            advisory = self.advisories.get(entry.advisory_id)
            best[entry.advisory_id] = AdvisoryMatch(
                advisory_id=entry.advisory_id,
                title=advisory.title if advisory else entry.advisory_id,
                cves=entry.cves or tuple(advisory.cves if advisory else ()),
                cvss_score=entry.cvss_score
                if entry.cvss_score is not None
                else (advisory.cvss_score if advisory else None),
                cvss_vector=entry.cvss_vector or (advisory.cvss_vector if advisory else None),
                kev=bool(advisory and advisory.kev),
                branch_path=entry.branch_path,
                product_id=entry.product_id,
                confidence=confidence,
                reason=reason,
            )
        return sorted(best.values(), key=lambda m: m.advisory_id)


@dataclass(frozen=True, slots=True)
class _DeviceView:
    """What matching reads of one device, computed once per device, not once per candidate."""

    compacts: tuple[str, ...]
    has_part: bool
    name_chunks: tuple[tuple[str, ...], ...]
    model_names: tuple[tuple[str, ...], ...]  # names that name a model on their own
    model_words: frozenset[str]  # model words of descriptive (not part-number) names
    family_chunks: tuple[tuple[str, ...], ...]

    @classmethod
    def of(
        cls, compacts: set[str], name_chunks: Sequence[tuple[str, ...]], families: Sequence[str]
    ) -> "_DeviceView":
        words: set[str] = set()
        for name in name_chunks:
            if not _is_part_number(compact(" ".join(name))):
                words.update(w for w in name if is_model_chunk(w))
        return cls(
            compacts=tuple(sorted(compacts)),
            has_part=any(_is_part_number(v) for v in compacts),
            name_chunks=tuple(name_chunks),
            model_names=tuple(n for n in name_chunks if _names_a_model(n)),
            model_words=frozenset(words),
            family_chunks=tuple(chunks(f) for f in families),
        )


def _product_evidence(entry: _Entry, device: _DeviceView) -> tuple[bool, str] | None:
    """(is a part number, why) when a device string names this product, else None."""
    for value in device.compacts:
        if value in entry.parts:
            return True, f"part number {value!r} named by the advisory"
        for pattern in entry.patterns:
            if value.startswith(pattern):
                return True, f"part number {value!r} fits the pattern {pattern.upper()}*"
    if (entry.parts or entry.patterns) and device.has_part:
        # The advisory lists part numbers and the device has one that is not among them: a
        # shared family word ("S7-300") would only say "a sibling model is affected".
        return None
    for words in device.family_chunks:
        # A family the part number implies, named word for word ("NJ/NX Series", "MELSEC iQ-R
        # series CPU modules"); a product that also names a model of its own ("iQ-R series
        # R08CPU", "MELSEC iQ-R series RJ71C24") is that model, not the family.
        if _contains_run(entry.chunks, words) and not (entry.model_chunks - set(words)):
            return False, f"family {' '.join(words)!r} named in product {entry.product!r}"
    # A model word inside a descriptive name ("M340" of "Modicon M340") stands alone.
    shared = device.model_words & entry.chunk_set
    if shared:
        word = min(shared)
        return False, f"model {word!r} named in product {entry.product!r}"
    for words in device.model_names:
        # One name contains the other, word for word: "Modicon M340" in "Modicon M340 CPU",
        # "AXC F 2152" in "PLCnext Control AXC F 2152"; the contained one must name a model.
        if _contains_run(entry.chunks, words):
            return False, f"model {' '.join(words)!r} named in product {entry.product!r}"
    core = entry.chunks
    if not _names_a_model(core):
        return None
    for words in device.name_chunks:
        if _contains_run(words, core):
            return False, f"product {entry.product!r} named by the device as {' '.join(words)!r}"
    return None


def _is_part_number(value: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    return (
        len(value) >= _MIN_PART_CHARS
        and digits >= 3
        and digits >= 0.3 * len(value)
        and any(c.isalpha() for c in value)
    )


def _names_a_model(run: tuple[str, ...]) -> bool:
    if len(run) == 1:
        return is_model_chunk(run[0])
    return any(any(c.isdigit() for c in word) for word in run)


def _contains_run(words: tuple[str, ...], run: tuple[str, ...]) -> bool:
    size = len(run)
    return any(words[i : i + size] == run for i in range(len(words) - size + 1))


def _judge(
    entry: _Entry,
    device: _DeviceView,
    version: tuple[int | None, ...] | None,
    firmware: str | None,
) -> tuple[Confidence, str] | None:
    evidence = _product_evidence(entry, device)
    if evidence is None:
        return None
    by_part, product_reason = evidence
    outcome = entry.spec.check(version)
    if entry.name_spec is not None and outcome is not VersionOutcome.OUT:
        # The product name itself limits the versions ("S7-1200 CPU family < V4.x").
        named = entry.name_spec.check(version)
        if named is VersionOutcome.OUT:
            return None
        if outcome is VersionOutcome.ALL and named is VersionOutcome.IN_RANGE:
            outcome = named
    if outcome is VersionOutcome.OUT:
        return None
    if outcome is VersionOutcome.UNKNOWN:
        why = (
            "the device reported no firmware version"
            if version is None
            else f"version range {entry.spec.text!r} could not be compared"
        )
        return Confidence.LOW, f"{product_reason}; {why}"
    if outcome is VersionOutcome.ALL:
        confidence = Confidence.MEDIUM
        version_reason = f"all versions affected ({entry.spec.text or 'no version given'})"
    else:
        confidence = Confidence.HIGH if by_part else Confidence.MEDIUM
        version_reason = f"firmware {firmware!r} within {entry.spec.text!r}"
    return confidence, f"{product_reason}; {version_reason}"
