"""Match devices against imported advisories by vendor, product and version, with a confidence.

A device matches an affected product of an advisory when:

1. **vendor**: the canonical vendor keys are equal (aliases folded: "Telemecanique" is Schneider
   Electric, "Allen-Bradley" is Rockwell), or the device's family is published under the
   advisory's vendor too (GE's PACSystems under Emerson);
2. **product**, the strongest evidence kept (products.py for the notations):
   - *part number / model*: one of the device's names is spelled by the product name (or a sibling
     of its slash list, or a part number in its version branch) on word boundaries, inner spaces
     and digit placeholders allowed ("140 CPU 651 50" in "140CPU65xxxxx", "2080-L50E-24QWB" after
     "2080 -L50E", "ILC 151 ETH" after "ILC 1x1");
   - *family*: the device is a member of a family (families.yaml) the product names as a whole
     ("SIMATIC S7-1500 CPU family" for 6ES7 511-1AK02-0AB0, "RTU500 series CMU" for RTU560);
3. **version**: the device firmware is inside the product's version range (versions.py), and inside
   any version line the product name writes ("... V7", "... V6 and below", "RSG2100 V5.X"), or the
   advisory says all versions.

Every match carries its confidence (confidence.py), the reason and the branch path that matched.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from sqlmodel import Session, select

from cybermission.findings.advisories.confidence import Confidence, Evidence, grade
from cybermission.findings.advisories.families import (
    FILLER,
    Family,
    FamilyBook,
    NameLine,
    family_book,
    name_lines,
)
from cybermission.findings.advisories.mentions import find_mention
from cybermission.findings.advisories.normalise import chunks, expand_product_name, vendor_key
from cybermission.findings.advisories.products import (
    WILD,
    Notation,
    align,
    is_model,
    models_in_version,
    notation,
    siblings,
)
from cybermission.findings.advisories.versions import (
    Version,
    VersionOutcome,
    VersionSpec,
    parse_version,
    parse_version_spec,
    starts_with,
)
from cybermission.findings.models import Advisory, AdvisoryProduct

# A version constraint written inside a product name ("S7-1200 CPU family < V4.x").
_NAME_RANGE_RE: Final = re.compile(r"(<=|>=|<|>)\s*v?\d+(?:\.(?:\d+|x))*", re.IGNORECASE)
# Products are reached by the first units of each of their words (a word shorter than that, or
# cut by a placeholder, by what it has): "6es75" selects a handful of Siemens part numbers where
# "6es" would select thousands.
_KEY_UNITS: Final = 5
_LONG_KEYS: Final = (8, 16)
# Vendors whose advisories write two-digit minors as floats ("2.1" for firmware 2.10).
_FLOAT_MINOR_VENDORS: Final = frozenset({"moxa"})


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
    # The sentence of the advisory's text that named the device (a mention), else None.
    quote: str | None = None


@dataclass(frozen=True, slots=True)
class _Passage:
    advisory_id: str
    notation: Notation


@dataclass(frozen=True, slots=True)
class _Entry:
    advisory_id: str
    product_id: str
    product: str
    vendor: str
    branch_path: tuple[str, ...]
    notations: tuple[Notation, ...]
    in_version: tuple[Notation, ...]  # part numbers the version branch holds
    spec: VersionSpec
    name_spec: VersionSpec | None
    lines: tuple[NameLine, ...]
    cves: tuple[str, ...]
    cvss_score: float | None
    cvss_vector: str | None


def _keys(note: Notation) -> set[str]:
    """Index keys of a product name: the first units from each word start; "=" and the word for
    a word shorter than that; "?" and the units before a placeholder that cuts the window."""
    keys: set[str] = set()
    ordered = sorted(note.bounds)
    for here, start in enumerate(ordered):
        window = note.units[start : start + _KEY_UNITS]
        head = window.split(WILD, 1)[0]
        if len(head) == _KEY_UNITS:
            keys.add(head)
        elif head and WILD in window:
            keys.add("?" + head)
        for size in _LONG_KEYS:
            longer = note.units[start : start + size]
            if len(longer) == size and WILD not in longer:
                keys.add(f"+{size}:{longer}")
        following = ordered[here + 1] if here + 1 < len(ordered) else len(note.units)
        word = note.units[start:following]
        if word and len(word) < _KEY_UNITS and WILD not in word:
            keys.add("=" + word)
    return keys


def _lookups(note: Notation) -> tuple[str, ...]:
    """The keys a device name reaches products by (see :func:`_keys`)."""
    units = note.units
    needed = len(_needed(note))
    sizes = [size for size in _LONG_KEYS if size <= needed]
    if sizes:
        # Every spelling starts with that many units or more: a longer key selects far fewer.
        found = [f"+{sizes[-1]}:{units[: sizes[-1]]}"]
    else:
        found = [units[:_KEY_UNITS] if len(units) >= _KEY_UNITS else "=" + units]
    found.extend("?" + units[:size] for size in range(1, min(_KEY_UNITS, len(units) + 1)))
    return tuple(found)


_MATCHES_KEPT: Final = 8192  # identities whose matches are kept (frozen tuples, ~a few KiB)


@dataclass(slots=True)
class AdvisoryIndex:
    """Affected products by vendor key, reachable by the first letters of each of their words
    and by the families they name."""

    advisories: dict[str, Advisory] = field(default_factory=dict)
    book: FamilyBook = field(default_factory=family_book)
    _count: int = 0
    _by_key: dict[str, dict[str, list[_Entry]]] = field(default_factory=dict)
    _by_family: dict[str, list[tuple[_Entry, tuple[NameLine, ...]]]] = field(default_factory=dict)
    _vendors_of: dict[str, set[str]] = field(default_factory=dict)
    _passages: dict[str, dict[str, list[_Passage]]] = field(default_factory=dict)
    # The answers already given, by identity: a network holds many devices of one model and
    # firmware, and the index does not change once built (``add`` clears it).
    _matched: dict[DeviceIdentity, tuple[AdvisoryMatch, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        advisories: Iterable[Advisory],
        products: Iterable[AdvisoryProduct],
        *,
        book: FamilyBook | None = None,
    ) -> "AdvisoryIndex":
        index = cls(advisories={a.id: a for a in advisories}, book=book or family_book())
        for product in products:
            index.add(product)
        for advisory in index.advisories.values():
            index.add_mentions(advisory)
        return index

    @classmethod
    def load(cls, session: Session, *, book: FamilyBook | None = None) -> "AdvisoryIndex":
        """Every stored advisory and affected product (about 16,000 for CISA's 2017-2024 set)."""
        return cls.build(
            session.exec(select(Advisory)), session.exec(select(AdvisoryProduct)), book=book
        )

    def __len__(self) -> int:
        return self._count

    def add(self, product: AdvisoryProduct) -> None:
        self._matched.clear()
        keys = _vendor_keys(product.vendor) or frozenset({product.vendor_key} - {""})
        if not keys:
            return
        names = (
            product.product,
            *siblings(product.product),
            *expand_product_name(product.product),
        )
        in_version = tuple(notation(m) for m in models_in_version(product.version))
        in_name = _NAME_RANGE_RE.search(product.product)
        entry = _Entry(
            advisory_id=product.advisory_id,
            product_id=product.product_id,
            product=product.product,
            vendor=product.vendor,
            branch_path=tuple(product.branch_path),
            notations=tuple(notation(n) for n in names),
            in_version=in_version,
            spec=_spec(None if in_version else product.version),
            name_spec=parse_version_spec(in_name.group(0)) if in_name else None,
            lines=name_lines(_NAME_RANGE_RE.sub(" ", product.product)),
            cves=tuple(product.cves),
            cvss_score=product.cvss_score,
            cvss_vector=product.cvss_vector,
        )
        self._count += 1
        self._vendors_of.setdefault(product.advisory_id, set()).update(keys)
        for key in keys:
            by_key = self._by_key.setdefault(key, {})
            for note in (*entry.notations, *in_version):
                for word in _keys(note):
                    by_key.setdefault(word, []).append(entry)
        words = set(chunks(product.product.replace("-", " ")))
        for family in self.book.families:
            if not keys & set(family.vendors):
                continue
            if not any(run[0] in words for run in family.names):
                continue
            named, lines = self.book.named_by(product.product, product.vendor, family)
            if named:
                self._by_family.setdefault(family.name, []).append((entry, lines))

    def add_mentions(self, advisory: Advisory) -> None:
        """Index the sentences of ``advisory`` under the vendors of its products (after them)."""
        self._matched.clear()
        keys = self._vendors_of.get(advisory.id, set())
        for text in advisory.mentions or ():
            passage = _Passage(advisory.id, notation(text))
            for key in keys:
                by_key = self._passages.setdefault(key, {})
                for word in _keys(passage.notation):
                    by_key.setdefault(word, []).append(passage)

    def match(self, device: DeviceIdentity) -> list[AdvisoryMatch]:
        """The advisories that apply to ``device``: one match per advisory, the most certain."""
        found = self._matched.get(device)
        if found is None:
            found = tuple(self._matches_of(device))
            if len(self._matched) >= _MATCHES_KEPT:
                self._matched.clear()
            self._matched[device] = found
        return list(found)

    def _matches_of(self, device: DeviceIdentity) -> list[AdvisoryMatch]:
        key = vendor_key(device.vendor)
        if not key:
            return []
        given = tuple(n for n in device.names if n and n.strip())
        members = self.book.of(key, given)
        vendors = {key, *(v for f in members for v in f.vendors)}
        names = (*given, *self.book.alias_names(key, given))
        notes = [n for n in (notation(name) for name in names) if n.units]
        candidates: dict[int, _Entry] = {}
        for vendor in vendors:
            by_key = self._by_key.get(vendor, {})
            for note in notes:
                for lookup in _lookups(note):
                    for entry in by_key.get(lookup, ()):
                        candidates[id(entry)] = entry
        by_family: dict[int, tuple[Family, tuple[NameLine, ...]]] = {}
        for family in members:
            for entry, lines in self._by_family.get(family.name, ()):
                candidates[id(entry)] = entry
                by_family.setdefault(id(entry), (family, lines))
        version = parse_version(device.firmware)
        best: dict[str, AdvisoryMatch] = {}
        named: set[str] = set()  # advisories whose tree names the device, in range or not
        for entry in candidates.values():
            evidence = _product_evidence(entry, notes)
            lines = entry.lines
            if evidence is None and id(entry) in by_family and not entry.in_version:
                family, lines = by_family[id(entry)]
                evidence = Evidence.FAMILY, f"family {family.name!r} named as {entry.product!r}"
            if evidence is None:
                continue
            named.add(entry.advisory_id)
            judged = _judge(entry, evidence, lines, version, device.firmware, key)
            if judged is None:
                continue
            confidence, reason = judged
            current = best.get(entry.advisory_id)
            if current is not None and current.confidence.rank >= confidence.rank:
                continue
            best[entry.advisory_id] = self._match(entry, confidence, reason)
        family_names = [
            notation(" ".join(run))
            for family in members
            for run in family.names
            if len(run) >= 2 or any(c.isdigit() for c in run[0])
        ]
        self._mentions(vendors, notes, family_names, version, named, best)
        return sorted(best.values(), key=lambda m: m.advisory_id)

    def _mentions(
        self,
        vendors: set[str],
        names: list[Notation],
        family_names: list[Notation],
        version: Version | None,
        named: set[str],
        best: dict[str, AdvisoryMatch],
    ) -> None:
        seen: set[int] = set()
        for vendor in vendors:
            by_key = self._passages.get(vendor, {})
            for name in (*names, *family_names):
                for lookup in _lookups(name):
                    for passage in by_key.get(lookup, ()):
                        if id(passage) in seen or passage.advisory_id in named:
                            continue
                        seen.add(id(passage))
                        if passage.advisory_id in best:
                            continue
                        mention = find_mention(passage.notation, names, version) or find_mention(
                            passage.notation, family_names, version, needs_version=True
                        )
                        if mention is None:
                            continue
                        advisory = self.advisories[passage.advisory_id]
                        best[passage.advisory_id] = AdvisoryMatch(
                            advisory_id=advisory.id,
                            title=advisory.title,
                            cves=tuple(advisory.cves),
                            cvss_score=advisory.cvss_score,
                            cvss_vector=advisory.cvss_vector,
                            kev=advisory.kev,
                            branch_path=(),
                            product_id="",
                            confidence=Confidence.LOW,
                            reason=f"{mention.name!r} named in the advisory's text only "
                            f"(version {mention.outcome.value})",
                            quote=mention.quote,
                        )

    def _match(self, entry: _Entry, confidence: Confidence, reason: str) -> AdvisoryMatch:
        advisory = self.advisories.get(entry.advisory_id)
        return AdvisoryMatch(
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


@lru_cache(maxsize=65536)
def _spec(version: str | None) -> VersionSpec:
    return parse_version_spec(version)


@lru_cache(maxsize=4096)
def _vendor_keys(vendor: str) -> frozenset[str]:
    """Every vendor of a product: advisories on shared components list several ("ABB, Phoenix
    Contact, Schneider Electric, Siemens, and WAGO", "General Electric (GE) and Emerson")."""
    keys = {vendor_key(vendor)}
    # "Sensormatic Electronics, LLC, a subsidiary of Johnson Controls Inc.": the parent too.
    parent = re.search(r"(?i)\bsubsidiary of (.+)$", vendor)
    if parent is not None:
        keys.add(vendor_key(parent.group(1)))
    for part in re.split(r",|\band\b|/", vendor):
        key = vendor_key(part)
        if key:
            keys.add(key)
    return frozenset(keys - {""})


def _is_part_number(units: str) -> bool:
    digits = sum(c.isdigit() for c in units)
    return len(units) >= 6 and digits >= 3 and any(c.isalpha() for c in units)


def _accept(device: Notation, product: Notation, start: int) -> tuple[Evidence, str] | None:
    """Whether ``device`` (or its catalogue-number head) is spelled by ``product`` at ``start``."""
    single_word = " " not in device.text.strip()
    # The longest spelling first: the first one accepted is the answer.
    for end, stop in sorted(align(device, product, start), reverse=True):
        trailing_wild = product.units[stop - 1] == WILD and (
            stop == len(product.units) or stop in product.bounds
        )
        if stop not in product.bounds and not trailing_wild:
            continue
        spelled = device.units[:end]
        matched = product.units[start:stop]
        if len(matched.replace(WILD, "")) < 3:
            continue
        whole = start == 0 and stop == len(product.units)
        if end == len(device.units):
            if not (
                is_model(spelled)
                or (spelled.isdigit() and len(spelled) >= 6)
                or (start == 0 and _names_device(product.text, device, stop))
            ):
                continue
            kind = Evidence.PART_NUMBER if _is_part_number(spelled) else Evidence.MODEL
            if WILD in matched:
                kind = Evidence.PATTERN
        elif not is_model(spelled):
            continue
        elif whole and WILD in matched and end in device.bounds:
            kind = Evidence.PATTERN  # "ILC 151 ETH" is of "ILC 1x1"
        elif (end in device.bounds or trailing_wild) and single_word and len(spelled) >= 5:
            # A catalogue number with a suffix the advisory leaves out ("2080-L50E-24QWB").
            kind = Evidence.PATTERN
        elif end in device.bounds and _ratings_only(device.text, end):
            kind = Evidence.MODEL  # "PowerFlex 525 480V 5HP": ratings after the model
        else:
            continue
        return kind, f"{device.text!r} spelled by product {product.text!r}"
    return None


def _names_device(product: str, device: Notation, stop: int) -> bool:
    """A product named in words ("Safety Manager", "ControlWave Micro [ProConOS ...] firmware")
    that the device's name spells out whole: what follows in the product says nothing more."""
    if len(device.bounds) < 3 or len(device.units) < 8:
        return False
    consumed = 0
    rest: list[str] = []
    for word in re.findall(r"[0-9A-Za-z]+", re.sub(r"\([^()]*\)|\[[^\[\]]*\]", " ", product)):
        if consumed >= stop:
            rest.append(word.casefold())
        consumed += len(word)
    return all(word in FILLER for word in rest)


def _ratings_only(text: str, end: int) -> bool:
    # A name whose first word is a word ("PowerFlex") and whose words after the matched head
    # are all ratings, a number and a unit ("480V", "5HP").
    count = 0
    words = re.findall(r"[0-9A-Za-z]+", text)
    rest: list[str] = []
    for word in words:
        if count >= end:
            rest.append(word)
        count += len(word)
    return (
        bool(rest)
        and bool(words)
        and words[0].isalpha()
        and all(re.fullmatch(r"\d+[A-Za-z]{0,3}", w) for w in rest)
    )


def _product_evidence(entry: _Entry, devices: list[Notation]) -> tuple[Evidence, str] | None:
    found: tuple[Evidence, str] | None = None
    # Part numbers in the version branch narrow the product to them.
    for product in entry.in_version or entry.notations:
        plain = WILD not in product.units
        for device in devices:
            if plain and _needed(device) not in product.units:
                continue  # what any accepted spelling of the device starts with is absent
            first = device.units[0]
            for start in product.bounds:
                if start >= len(product.units):
                    continue
                unit = product.units[start]
                if unit != first and unit != WILD:
                    continue
                accepted = _accept(device, product, start)
                if accepted is None:
                    continue
                if product in entry.in_version:
                    accepted = Evidence.IN_VERSION, accepted[1] + " (in the version branch)"
                if found is None or accepted[0].rank > found[0].rank:
                    found = accepted
    if found is None and not entry.in_version:
        found = _model_in_device(entry.notations[0], devices)
    return found


@lru_cache(maxsize=65536)
def _needed(device: Notation) -> str:
    """The units every accepted spelling of ``device`` starts with (see :func:`_accept`): a
    one-word name, its first five (a catalogue-number head) or all; a name of several words,
    the words up to its last that is not a rating ("PowerFlex 525" of "PowerFlex 525 480V 5HP"),
    two at least."""
    units = device.units
    if " " not in device.text.strip():
        return units[: min(len(units), 5)]
    # A head before ratings: at least two words, and every word that is not a rating.
    words = re.findall(r"[0-9A-Za-z]+", device.text)
    keep = 2
    for index, word in enumerate(words):
        if not re.fullmatch(r"\d+[A-Za-z]{0,3}", word):
            keep = max(keep, index + 1)
    return units[: sum(len(w) for w in words[:keep])]


def _model_in_device(product: Notation, devices: list[Notation]) -> tuple[Evidence, str] | None:
    """A product that is one model word ("CPE330") found whole inside a device's name
    ("PACSystems RX3i CPE330")."""
    # "MB3180 series", "CPE330": one model word, then filler words at most.
    words = product.text.split()
    while len(words) > 1 and words[-1].casefold() in FILLER:
        words.pop()
    if len(words) != 1:
        return None
    units = notation(words[0]).units
    if len(units) < 4 or WILD in units or not is_model(units):
        return None
    for device in devices:
        at = device.units.find(units)
        while at >= 0:
            if at in device.bounds and at + len(units) in device.bounds:
                return Evidence.MODEL, f"model {words[0]!r} named in {device.text!r}"
            at = device.units.find(units, at + 1)
    return None


def _line_allows(line: NameLine, version: Version | None) -> bool | None:
    spec = parse_version(line.text)
    if spec is None or version is None:
        return None
    if line.and_below:
        head = Version(version.release[: len(spec.release)])
        from cybermission.findings.advisories.versions import compare_versions

        return compare_versions(head, Version(spec.release)) <= 0
    return starts_with(version, spec)


def _float_minor(spec: VersionSpec, version: Version | None) -> bool:
    """ "2.1" written for 2.10: a listed release with a one-digit minor, read as two digits."""
    if version is None:
        return False
    for point in spec.points:
        release = point.release
        if len(release) == 2 and release[1] is not None and release[1] < 10:
            widened = Version((release[0], release[1] * 10))
            if starts_with(version, widened):
                return True
    return False


def _judge(
    entry: _Entry,
    evidence: tuple[Evidence, str],
    lines: tuple[NameLine, ...],
    version: Version | None,
    firmware: str | None,
    vendor: str,
) -> tuple[Confidence, str] | None:
    kind, product_reason = evidence
    for line in lines:
        if _line_allows(line, version) is False:
            return None
    outcome = entry.spec.check(version, firmware)
    if (
        outcome is VersionOutcome.OUT
        and vendor in _FLOAT_MINOR_VENDORS
        and _float_minor(entry.spec, version)
    ):
        outcome = VersionOutcome.IN_RANGE
    if entry.name_spec is not None and outcome is not VersionOutcome.OUT:
        # The product name itself limits the versions ("S7-1200 CPU family < V4.x").
        named = entry.name_spec.check(version, firmware)
        if named is VersionOutcome.OUT:
            return None
        if outcome is VersionOutcome.ALL and named is VersionOutcome.IN_RANGE:
            outcome = named
    if outcome is VersionOutcome.OUT:
        return None
    if kind is Evidence.IN_VERSION:
        outcome = VersionOutcome.UNKNOWN
    confidence = grade(kind, outcome)
    if outcome is VersionOutcome.UNKNOWN:
        why = (
            "the device reported no firmware version"
            if version is None
            else f"version range {entry.spec.text or entry.product!r} could not be compared"
        )
    elif outcome is VersionOutcome.ALL:
        why = f"all versions affected ({entry.spec.text or 'no version given'})"
    else:
        why = f"firmware {firmware!r} within {entry.spec.text!r}"
    return confidence, f"{product_reason}; {why}"
