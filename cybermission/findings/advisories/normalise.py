"""Normalise what devices and advisories say: vendor aliases, part numbers, versions and ranges.

Device strings and CSAF product trees name the same thing differently: "Schneider Electric
Software, LLC" and "Telemecanique", "BMX P34 2020" and "BMXP34*", "v2.70" and "< SV3.51",
``vers:all/<V4.3.8`` (the ``vers:`` syntax of the Package URL project, as CISA writes it).
"""

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# Vendor aliases, matched as a prefix of the cleaned name (longest first): subsidiaries, old
# brands and the spellings CISA and devices use. The value is the canonical key.
VENDOR_ALIASES: Final[dict[str, str]] = {
    "schneider": "schneider electric",
    "telemecanique": "schneider electric",
    "modicon": "schneider electric",
    "square d": "schneider electric",
    "merlin gerin": "schneider electric",
    "apc": "schneider electric",
    "siemens": "siemens",
    "rockwell": "rockwell automation",
    "allen bradley": "rockwell automation",
    "mitsubishi": "mitsubishi electric",
    "phoenix contact": "phoenix contact",
    "3s smart software": "codesys",
    "codesys": "codesys",
    "wago": "wago",
    "omron": "omron",
    "hitachi energy": "hitachi energy",
    "abb": "abb",
    "honeywell": "honeywell",
    "general electric": "ge",
    "ge": "ge",
    "ge digital": "ge",
    "emerson": "emerson",
    "yokogawa": "yokogawa",
    "johnson controls": "johnson controls",
    "tridium": "tridium",
    "delta electronics": "delta electronics",
    "delta controls": "delta controls",
    "automated logic": "automated logic",
    "eaton": "eaton",
    "danfoss": "danfoss",
    "moxa": "moxa",
    "advantech": "advantech",
    "beckhoff": "beckhoff",
    "bosch": "bosch",
    "hirschmann": "belden",
    "belden": "belden",
    "weidmuller": "weidmueller",
    "weidmueller": "weidmueller",
}
_ALIASES_BY_LENGTH: Final = sorted(VENDOR_ALIASES.items(), key=lambda item: -len(item[0]))
# Legal forms and filler words that do not tell vendors apart.
_VENDOR_NOISE: Final = frozenset(
    {
        "llc",
        "inc",
        "incorporated",
        "gmbh",
        "ag",
        "co",
        "kg",
        "ltd",
        "limited",
        "corp",
        "corporation",
        "company",
        "sa",
        "se",
        "plc",
        "spa",
        "bv",
        "the",
        "and",
    }
)
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_CHUNK_SPLIT = re.compile(r"[^0-9a-z*]+")


def vendor_key(name: str | None) -> str:
    """A vendor's canonical key: case-folded, legal forms dropped, aliases folded."""
    if not name:
        return ""
    words = [w for w in _NON_ALNUM.split(name.casefold()) if w and w not in _VENDOR_NOISE]
    cleaned = " ".join(words)
    for alias, key in _ALIASES_BY_LENGTH:
        # Whole words only: "ab" is ABB's neighbour, not its prefix.
        if cleaned == alias or cleaned.startswith(alias + " "):
            return key
    return cleaned


def compact(text: str) -> str:
    """Case-folded, spaces, dashes and punctuation removed: "BMX P34 2020" -> "bmxp342020"."""
    return _NON_ALNUM.sub("", text.casefold())


def chunks(text: str) -> tuple[str, ...]:
    """Words of a product name, case-folded; ``*`` kept (it marks a part-number pattern)."""
    return tuple(c for c in _CHUNK_SPLIT.split(text.casefold()) if c)


def is_model_chunk(chunk: str) -> bool:
    """A chunk that names a model on its own: letters and digits mixed ("m340", "s7")."""
    return any(c.isdigit() for c in chunk) and any(c.isalpha() for c in chunk) and len(chunk) >= 3


# Families named by part-number prefixes, so a device that only reports its order number also
# meets advisories written for the family ("SIMATIC S7-300 CPU family"). Compact prefixes; "|"
# separates names of the same family from the narrowest to the widest.
FAMILY_BY_PART_PREFIX: Final[dict[str, str]] = {
    "6es731": "SIMATIC S7-300",
    "6es721": "SIMATIC S7-1200",
    "6es751": "SIMATIC S7-1500",
    "6es741": "SIMATIC S7-400",
    "6es7288": "SIMATIC S7-200 SMART",
    "bmxp34": "Modicon M340",
    "bmep58": "Modicon M580",
    "bmeh58": "Modicon M580",
    "140cpu": "Modicon Quantum",
    "tm221": "Modicon M221",
    "tm241": "Modicon M241",
    "tm251": "Modicon M251",
    "1756": "ControlLogix",
    "1769l1": "CompactLogix 5370 L1|CompactLogix 5370",
    "1769l2": "CompactLogix 5370 L2|CompactLogix 5370",
    "1769l3": "CompactLogix 5370 L3|CompactLogix 5370",
    "5069l3": "CompactLogix 5380",
    "nj101": "NJ/NX Series",
    "nj301": "NJ/NX Series",
    "nj501": "NJ/NX Series",
    "nx1p2": "NJ/NX Series",
    "nx102": "NJ/NX Series",
    "nx701": "NJ/NX Series",
    "cj2m": "SYSMAC CJ2M",
    "cj2h": "SYSMAC CJ2H",
    "1766": "MicroLogix 1400",
    "1763": "MicroLogix 1100",
}


# Families whose model names follow a grammar rather than a prefix (Mitsubishi: "R04CPU",
# "R08SFCPU", "R120ENCPU" are MELSEC iQ-R CPUs; "FX5U-32MT/ES" is iQ-F). Compact names.
FAMILY_BY_PART_RE: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"^r\d{2,3}(en|p|sf|psf|f|mt|c)?cpu"), "iQ-R"),
    (re.compile(r"^fx5(u|uc|uj|s)?\d"), "iQ-F"),
)


def families(names: tuple[str, ...]) -> tuple[str, ...]:
    """Family names implied by the part numbers among ``names``."""
    found: list[str] = []
    for name in names:
        value = compact(name)
        for prefix, family in FAMILY_BY_PART_PREFIX.items():
            if value.startswith(prefix):
                found.extend(f for f in family.split("|") if f not in found)
        for pattern, family in FAMILY_BY_PART_RE:
            if pattern.match(value):
                found.extend(f for f in family.split("|") if f not in found)
    return tuple(found)


# "R04/08/16/32/120(EN)CPU": letters, then numbers separated by "/", then the rest of the word.
_SLASH_NUMBERS_RE: Final = re.compile(r"(?<![0-9A-Za-z])([A-Za-z]{1,4})(\d+(?:/\d+)+)(\S*)")
# An option glued to a word: "(EN)", "(-P)", "(-R2/R4)", "(C)"; short alternatives only.
_GLUED_OPTION_RE: Final = re.compile(r"(?<=\S)\(([A-Za-z0-9-]{1,6}(?:/[A-Za-z0-9-]{1,6})*)\)")
_OPTION_ONLY_RE: Final = re.compile(r"\([A-Za-z0-9/-]{1,20}\)")
_SHORT_SUFFIX_RE: Final = re.compile(r"\s+([A-Za-z]{2,4})\b")
_MAX_VARIANTS: Final = 64


def expand_product_name(name: str) -> tuple[str, ...]:
    """The model names a compressed product name stands for, without the name itself.

    Mitsubishi and others list siblings in one name: "R04/08/16/32/120(EN)CPU" is R04CPU, R08CPU,
    ..., R120CPU and R04ENCPU, ..., R120ENCPU; "R00/01/02 CPU" is R00CPU, R01CPU, R02CPU;
    "L02CPU(-P)" is L02CPU and L02CPU-P; "RJ71C24(-R2/R4)" is RJ71C24, RJ71C24-R2, RJ71C24-R4.
    A number list needs a letter prefix ("522/722" and "3060/00" are left alone).
    """
    words: list[str] = []
    for found in _SLASH_NUMBERS_RE.finditer(name):
        prefix, numbers, rest = found.groups()
        if not rest or _OPTION_ONLY_RE.fullmatch(rest):
            # "R00/01/02 CPU": the model's suffix is the next short word.
            after = _SHORT_SUFFIX_RE.match(name, found.end())
            if after is not None:
                rest += after.group(1)
        words.extend(prefix + number + rest for number in numbers.split("/"))
    for token in name.split():
        if _GLUED_OPTION_RE.search(token) and not _SLASH_NUMBERS_RE.search(token):
            words.append(token)
    variants: list[str] = []
    for word in words:
        for variant in _expand_options(word):
            if variant != name and variant not in variants:
                variants.append(variant)
            if len(variants) >= _MAX_VARIANTS:
                return tuple(variants)
    return tuple(variants)


def _expand_options(word: str) -> list[str]:
    found = _GLUED_OPTION_RE.search(word)
    if found is None:
        return [word]
    head, tail = word[: found.start()], word[found.end() :]
    expanded: list[str] = []
    options = found.group(1).split("/")
    if options[0].startswith("-"):
        # "(-R2/R4)": the dash is written once for every alternative.
        options = [o if o.startswith("-") else "-" + o for o in options]
    for option in ("", *options):
        expanded.extend(_expand_options(head + option + tail))
    return expanded


# ---- versions ------------------------------------------------------------------------------

Component = int | None  # None: a wildcard ("x", "*") that equals any value
Version = tuple[Component, ...]

_VERSION = r"(\d+(?:\.(?:\d+|[x*]))*)"
_VERSION_RE: Final = re.compile(_VERSION, re.IGNORECASE)
# A comparator, optional letters before the number (V, SV, R, FW), the number.
_COMPARATOR_RE: Final = re.compile(
    r"(<=|>=|!=|<|>|=|≤|≥)\s*(?:[a-z]{1,3}\s*)?" + _VERSION, re.IGNORECASE
)
_AND_PRIOR_RE: Final = re.compile(
    r"(?:[a-z]{1,3}\s*)?" + _VERSION + r"\s*(?:and|or|&)\s*(?:prior|earlier|older|before|below)",
    re.IGNORECASE,
)
_PRIOR_TO_RE: Final = re.compile(
    r"(prior to|before|earlier than|older than|up to|through|until)\s*(?:[a-z]{1,3}\s*)?"
    + _VERSION,
    re.IGNORECASE,
)
_SPAN_RE: Final = re.compile(
    r"\s*(?:[a-z]{1,3}\s*)?"
    + _VERSION
    + r"\s*(?:-|to|through)\s*(?:[a-z]{1,3}\s*)?"
    + _VERSION
    + r"\s*",
    re.IGNORECASE,
)
_OTHER_DIMENSION_RE: Final = re.compile(
    r"(?i)\b(?:and\s+|with\s+)?(?:function state|\(fs\)|fs\s*[<>=]|serial|hardware|hw\s)"
)
_ALL_RE: Final = re.compile(r"^\s*(all(\s+\w+)?\s+versions?|all|\*|any|vers:[a-z]+/\*)\s*$", re.I)


def parse_version(text: str | None) -> Version | None:
    """The numeric components of the first version in ``text``: "V3.2.8" -> (3, 2, 8)."""
    if not text:
        return None
    found = _VERSION_RE.search(text)
    if found is None:
        return None
    return tuple(None if part in "xX*" else int(part) for part in found.group(1).split("."))


def compare_versions(device: Version, spec: Version) -> int:
    """-1, 0, 1 as ``device`` is below, equal to or above ``spec``; wildcards in ``spec`` equal
    anything, missing components count as 0 ("3.51" == "3.51.0")."""
    length = max(len(device), len(spec))
    for index in range(length):
        want = spec[index] if index < len(spec) else 0
        if want is None:
            continue
        have = device[index] if index < len(device) else 0
        have = 0 if have is None else have
        if have != want:
            return -1 if have < want else 1
    return 0


class VersionOutcome(StrEnum):
    IN_RANGE = "in-range"  # a concrete range contains the device version
    ALL = "all-versions"  # the advisory says every version is affected
    UNKNOWN = "unknown"  # the device has no version, or the range is not understood
    OUT = "out-of-range"


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """A parsed version constraint: every version, intervals and points, or not understood."""

    text: str
    every: bool = False
    # (lower, lower_inclusive, upper, upper_inclusive); None bounds are open.
    intervals: tuple[tuple[Version | None, bool, Version | None, bool], ...] = ()
    points: tuple[Version, ...] = ()
    # The text also limits another dimension (function state, hardware, serial): a version in
    # range proves nothing on its own.
    conditional: bool = False

    @property
    def understood(self) -> bool:
        return self.every or bool(self.intervals) or bool(self.points)

    def check(self, version: Version | None) -> VersionOutcome:
        outcome = self._check(version)
        if self.conditional and outcome in (VersionOutcome.ALL, VersionOutcome.IN_RANGE):
            return VersionOutcome.UNKNOWN
        return outcome

    def _check(self, version: Version | None) -> VersionOutcome:
        if self.every:
            return VersionOutcome.ALL
        if version is None or not self.understood:
            return VersionOutcome.UNKNOWN
        for point in self.points:
            # "V2.70" or "3.x" names a release line: the device's version starts with it.
            if compare_versions(version[: len(point)], point) == 0:
                return VersionOutcome.IN_RANGE
        for lower, lower_inc, upper, upper_inc in self.intervals:
            if lower is not None:
                order = compare_versions(version, lower)
                if order < 0 or (order == 0 and not lower_inc):
                    continue
            if upper is not None:
                # "<= 33" covers every 33.x: an inclusive upper bound compares its own length.
                order = compare_versions(version[: len(upper)] if upper_inc else version, upper)
                if order > 0 or (order == 0 and not upper_inc):
                    continue
            return VersionOutcome.IN_RANGE
        return VersionOutcome.OUT


def _version_of(text: str) -> Version:
    return tuple(None if part in "xX*" else int(part) for part in text.split("."))


def parse_version_spec(text: str | None) -> VersionSpec:
    """Parse a CSAF ``product_version`` / ``product_version_range`` name.

    Understood: ``vers:<scheme>/*`` and "All versions"; comparators in ``vers:`` or free text
    (``vers:all/>=V7.80<V9.40``, ``< SV3.51``, ``>= 1.0 | <= 1.32``, ``<= V4.4``); "3.51 and
    prior", "prior to 4.0"; a bare version or line ("V2.70", "V3.x"). Anything else (serial-number
    ranges, build dates) is kept as text and yields :attr:`VersionOutcome.UNKNOWN`.
    """
    raw = (text or "").strip()
    if not raw:
        return VersionSpec(text=raw, every=True)  # a product with no version branch
    body = raw
    if body.casefold().startswith("vers:"):
        body = body.partition("/")[2]
        if body.strip() in ("", "*"):
            return VersionSpec(text=raw, every=True)
    # Other dimensions written beside the version ("and Function State (FS) <= 9", serial
    # number ranges) are not versions: only what comes before them is read.
    parts = _OTHER_DIMENSION_RE.split(body, maxsplit=1)
    conditional = len(parts) > 1
    body = re.sub(r"(?i)^\s*versions?\b", "", parts[0])
    if _ALL_RE.match(body):
        return VersionSpec(text=raw, every=True, conditional=conditional)
    bounds: list[tuple[str, Version]] = []
    for op, number in _COMPARATOR_RE.findall(body):
        bounds.append(({"≤": "<=", "≥": ">="}.get(op, op), _version_of(number)))
    for number in _AND_PRIOR_RE.findall(body):
        bounds.append(("<=", _version_of(number)))
    for word, number in _PRIOR_TO_RE.findall(body):
        inclusive = word.casefold() in ("up to", "through", "until")
        bounds.append(("<=" if inclusive else "<", _version_of(number)))
    span = _SPAN_RE.fullmatch(body)
    if not bounds and span is not None:
        bounds = [(">=", _version_of(span.group(1))), ("<=", _version_of(span.group(2)))]
    if not bounds:
        version = parse_version(body)
        if version is not None and re.fullmatch(
            r"\s*[a-z]{0,3}\s*" + _VERSION + r"\s*", body, re.I
        ):
            return VersionSpec(text=raw, points=(version,), conditional=conditional)
        return VersionSpec(text=raw)
    intervals: list[tuple[Version | None, bool, Version | None, bool]] = []
    points: list[Version] = []
    lower: tuple[Version, bool] | None = None
    for op, version in bounds:
        if op in (">", ">="):
            if lower is not None:
                intervals.append((lower[0], lower[1], None, False))
            lower = (version, op == ">=")
        elif op in ("<", "<="):
            intervals.append(
                (lower[0] if lower else None, lower[1] if lower else False, version, op == "<=")
            )
            lower = None
        elif op == "=":
            points.append(version)
        # "!=" excludes one version from "all": rare enough to leave as not understood.
    if lower is not None:
        intervals.append((lower[0], lower[1], None, False))
    return VersionSpec(
        text=raw, intervals=tuple(intervals), points=tuple(points), conditional=conditional
    )


def change_direction(old: str | None, new: str | None) -> str:
    """How a version changed: "upgrade", "downgrade", "same" or "unknown" (not comparable)."""
    before, after = parse_version(old), parse_version(new)
    if before is None or after is None:
        return "unknown"
    order = compare_versions(after, before)
    return "same" if order == 0 else ("upgrade" if order > 0 else "downgrade")
