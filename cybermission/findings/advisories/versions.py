"""Versions as OT vendors write them, in one total order, and the ranges advisories give.

A version is a numeric release (``V4.7``, ``R511.5``, ``15.2(6)``, ``R302-V2``, ``2-01-00``) and
qualifiers after it, in the order written: service packs, updates, hotfixes, cumulative updates,
patches, release trains (``E2a``) and letter suffixes (``4.3.8a``) come *after* the release they
qualify; release candidates, betas and alphas come *before* it. So ``V2.2 SP1 < V2.2 SP2``,
``1.0-rc1 < 1.0``, ``4.3.8 < 4.3.8a``, ``V16 Update 3 < V16 Update 3a < V16 Update 4``,
``V4.7 SP9 HF1 < V4.7 SP10 HF5``, ``6.9.2 < 6.9.2 CU01``, ``R511.5 < R511.5_TCU4_HF4``.
Missing components count as zero (``3.51 == 3.51.0``); ``x`` or ``*`` is a wildcard that equals
any value on the range side.
"""

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple

Component = int | None  # None: a wildcard ("x", "*") that equals any value


class Qualifier(NamedTuple):
    """One qualifier: ``sign`` -1 before the release (rc), +1 after it (SP, update, hotfix)."""

    sign: int
    number: int
    letter: str


class Version(NamedTuple):
    release: tuple[Component, ...]
    qualifiers: tuple[Qualifier, ...] = ()


_NONE: Final = Qualifier(0, 0, "")
# Words that qualify a release, by what they mean for the order.
_PRE_WORDS: Final = ("rc", "beta", "alpha", "pre", "b", "a")
_POST_WORDS: Final = (
    "servicepack",
    "sp",
    "update",
    "upd",
    "u",
    "hotfix",
    "hf",
    "cu",
    "tcu",
    "patch",
    "p",
    "build",
    "e",
    "r",
)
_RELEASE_RE: Final = re.compile(
    r"(?<![0-9A-Za-z])(?:[A-Za-z]{1,3}\s?)?(\d+(?:[.\-](?:\d+|[xX*])|\(\d+\)|[xX](?![A-Za-z]))*)"
)
_QUALIFIER_RE: Final = re.compile(
    r"(?i)(service\s*pack|sp|update|upd|u|hotfix|hf|cu|tcu|patch|p|build|rc|beta|alpha|pre|"
    r"e|r)\s*[-_.]?\s*(\d+)([a-z]?)(?![a-z])"
)
_LETTER_SUFFIX_RE: Final = re.compile(r"^([a-z])(?![a-z0-9])", re.IGNORECASE)
_SEL_RE: Final = re.compile(r"(?i)\bR(\d+)-V(\d+)\b")


def _release(text: str) -> tuple[Component, ...]:
    parts: list[Component] = []
    # "15.2(6)" and "02.07.07(10)": the bracketed number is one more component.
    for piece in re.split(r"[.\-()]+", text):
        if not piece:
            continue
        digits = piece.rstrip("xX*")
        if not digits:
            parts.append(None)
        elif not digits.isdigit():
            break
        elif len(digits) < len(piece):
            # "R16x": a digit placeholder at the end of a number: the line of 160 to 169.
            parts.append(int(digits) * 10 ** (len(piece) - len(digits)))
        else:
            parts.append(int(piece))
    return tuple(parts)


def parse_version(text: str | None) -> Version | None:
    """The first version in ``text`` with its qualifiers ("V4.7 SP9 HF1", "R302-V2")."""
    if not text:
        return None
    sel = _SEL_RE.search(text)
    if sel is not None:
        # SEL firmware: release R302, revision V2 ("R302-V2"), one ordered pair.
        return Version((int(sel.group(1)), int(sel.group(2))))
    found = _RELEASE_RE.search(text)
    if found is None:
        return None
    release = _release(found.group(1))
    rest = text[found.end() :]
    qualifiers: list[Qualifier] = []
    letter = _LETTER_SUFFIX_RE.match(rest)
    if letter is not None:
        # "4.3.8a": a letter glued to the release is a later build of it.
        qualifiers.append(Qualifier(1, 0, letter.group(1).casefold()))
        rest = rest[letter.end() :]
    for word, number, suffix in _QUALIFIER_RE.findall(rest):
        key = re.sub(r"\s+", "", word.casefold())
        sign = -1 if key in _PRE_WORDS else 1
        qualifiers.append(Qualifier(sign, int(number), suffix.casefold()))
    return Version(release, tuple(qualifiers))


def compare_versions(device: Version, spec: Version) -> int:
    """-1, 0, 1 as ``device`` is below, equal to or above ``spec``; wildcards in ``spec`` equal
    anything, missing components count as 0 ("3.51" == "3.51.0"), qualifiers as written."""
    for index in range(max(len(device.release), len(spec.release))):
        want = spec.release[index] if index < len(spec.release) else 0
        if want is None:
            continue
        have = device.release[index] if index < len(device.release) else 0
        have = 0 if have is None else have
        if have != want:
            return -1 if have < want else 1
    for index in range(max(len(device.qualifiers), len(spec.qualifiers))):
        mine = device.qualifiers[index] if index < len(device.qualifiers) else _NONE
        theirs = spec.qualifiers[index] if index < len(spec.qualifiers) else _NONE
        if mine != theirs:
            return -1 if mine < theirs else 1
    return 0


def starts_with(version: Version, line: Version) -> bool:
    """Whether ``version`` is of the release line ``line`` ("3.2.8" of "3.x", "2.2.3.4" of
    "2.2.3"); a line with qualifiers must equal them ("V16 Update 3" is not of "V16 Update 4")."""
    head = Version(version.release[: len(line.release)], version.qualifiers)
    if line.qualifiers:
        return compare_versions(head, line) == 0
    return compare_versions(Version(head.release), Version(line.release)) == 0


class VersionOutcome(StrEnum):
    IN_RANGE = "in-range"  # a concrete range contains the device version
    ALL = "all-versions"  # the advisory says every version is affected
    UNKNOWN = "unknown"  # the device has no version, or the range is not understood
    OUT = "out-of-range"


Interval = tuple[Version | None, bool, Version | None, bool]


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """A parsed version constraint: every version, intervals and points, or not understood."""

    text: str
    every: bool = False
    # (lower, lower_inclusive, upper, upper_inclusive); None bounds are open.
    intervals: tuple[Interval, ...] = ()
    points: tuple[Version, ...] = ()
    # Release trains ("<v36.011_v35.013_v34.014"): the fix of each major line.
    trains: tuple[Version, ...] = ()
    # The text also limits another dimension (function state, hardware): a version in range
    # proves nothing on its own.
    conditional: bool = False
    # The numbers are the first digits of serial numbers (Mitsubishi): only a device whose
    # "firmware" is such a serial prefix compares.
    serial: bool = False

    @property
    def understood(self) -> bool:
        return self.every or bool(self.intervals or self.points or self.trains)

    def check(self, version: Version | None, firmware: str | None = None) -> VersionOutcome:
        if self.serial and not (firmware and re.fullmatch(r"\s*\d{5}\s*", firmware)):
            return VersionOutcome.UNKNOWN
        outcome = self._check(version)
        if self.conditional and outcome in (VersionOutcome.ALL, VersionOutcome.IN_RANGE):
            return VersionOutcome.UNKNOWN
        return outcome

    def _check(self, version: Version | None) -> VersionOutcome:
        if self.every:
            return VersionOutcome.ALL
        if version is None or not self.understood:
            return VersionOutcome.UNKNOWN
        if any(starts_with(version, point) for point in self.points):
            return VersionOutcome.IN_RANGE
        if self.trains and _in_trains(version, self.trains):
            return VersionOutcome.IN_RANGE
        for lower, lower_inc, upper, upper_inc in self.intervals:
            if lower is not None:
                order = compare_versions(version, lower)
                if order < 0 or (order == 0 and not lower_inc):
                    continue
            if upper is not None:
                # "<= 33" covers every 33.x: an inclusive upper bound compares its own length.
                head = (
                    Version(version.release[: len(upper.release)], version.qualifiers)
                    if upper_inc and not upper.qualifiers
                    else version
                )
                order = compare_versions(head, upper)
                if order > 0 or (order == 0 and not upper_inc):
                    continue
            return VersionOutcome.IN_RANGE
        return VersionOutcome.OUT


def _in_trains(version: Version, trains: tuple[Version, ...]) -> bool:
    """Affected when below the fix of its own major line, or older than every fixed line."""
    major = version.release[0] if version.release else None
    for fix in trains:
        if fix.release and fix.release[0] == major:
            return compare_versions(version, fix) < 0
    majors = [fix.release[0] for fix in trains if fix.release and fix.release[0] is not None]
    return bool(majors) and major is not None and major < min(majors)


_V = (
    r"(?:[a-z]{1,3}\s?)?(\d+(?:[.\-](?:\d+|x|\*)|\(\d+\)|x(?![a-z]))*(?:[a-z](?![a-z0-9]))?"
    r"(?:[\s_]*[a-z]{1,7}[\s_]*\d+[a-z]?)*)"
)
_COMPARATOR_RE: Final = re.compile(r"(<=|>=|!=|<|>|=|≤|≥)\s*" + _V, re.IGNORECASE)
_AND_PRIOR_RE: Final = re.compile(
    _V + r"\s*(?:and|or|&)\s*(?:prior|earlier|older|before|below)", re.IGNORECASE
)
_PRIOR_TO_RE: Final = re.compile(
    r"(prior to|before|earlier than|older than|up to|through|until)\s*" + _V, re.IGNORECASE
)
_BETWEEN_RE: Final = re.compile(
    r"(?i)between\s+"
    + _V
    + r"\s*\((including|excluding)\)\s*and\s+"
    + _V
    + r"\s*\((including|excluding)\)"
)
_SPAN_RE: Final = re.compile(r"\s*" + _V + r"\s*(?:-|to|through)\s*" + _V + r"\s*", re.IGNORECASE)
_TRAINS_RE: Final = re.compile(r"(?i)^\s*<\s*(v?\d+(?:\.\d+)+(?:_v?\d+(?:\.\d+)+)+)\s*$")
_SERIAL_RE: Final = re.compile(r"(?i)serial[\s_]*(?:number|no\.?)[\s_]*(\d{5})")
_OTHER_DIMENSION_RE: Final = re.compile(
    r"(?i)\b(?:and\s+|with\s+)?(?:function state|\(fs\)|fs\s*[<>=]|serial|hardware|hw\s)"
)
_ALL_RE: Final = re.compile(r"^\s*(all(\s+\w+)?\s+versions?|all|\*|any|vers:[a-z]+/\*)\s*$", re.I)
_LIST_ITEM_RE: Final = re.compile(r"(?i)^\s*(?:[a-z]{1,3}\s?)?\d+(?:\.\d+)*[a-z]?\s*$")


def _version_of(text: str) -> Version:
    parsed = parse_version(text)
    return parsed if parsed is not None else Version(())


def parse_version_spec(text: str | None) -> VersionSpec:
    """Parse a CSAF ``product_version`` / ``product_version_range`` name.

    Understood: ``vers:<scheme>/*`` and "All versions"; comparators in ``vers:`` or free text
    (``vers:all/>=V7.80<V9.40``, ``< SV3.51``, ``>= 1.0 | <= 1.32``, ``>=R16x|<=R162.10``,
    ``< V16 Update 3a``); "3.51 and prior", "prior to 4.0"; "between V2.5 (including) and V2.7
    (excluding)"; spans ("12.7.1-12.7.3"); lists of releases ("9.0.1 | 9.0.2", "R140 | R150");
    release trains ("<v36.011_v35.013_v34.014"); serial-number prefixes
    ("<=the_first_5_digits_of_serial_number_22081"); a bare version or line ("V2.70", "V3.x").
    Anything else is kept as text and yields :attr:`VersionOutcome.UNKNOWN`.
    """
    raw = (text or "").strip()
    if not raw:
        return VersionSpec(text=raw, every=True)  # a product with no version branch
    body = raw
    if body.casefold().startswith("vers:"):
        body = body.partition("/")[2]
        if body.strip() in ("", "*"):
            return VersionSpec(text=raw, every=True)
    # SEL's "R302-V3" is release 302, revision 3.
    body = _SEL_RE.sub(lambda m: f"{m.group(1)}.{m.group(2)}", body)
    trains = _TRAINS_RE.match(body)
    if trains is not None:
        return VersionSpec(
            text=raw, trains=tuple(_version_of(t) for t in trains.group(1).split("_"))
        )
    serial = _SERIAL_RE.search(body)
    if serial is not None:
        op = "<=" if "<=" in body else (">=" if ">=" in body else "<" if "<" in body else None)
        bound = Version((int(serial.group(1)),))
        if op in ("<=", "<"):
            return VersionSpec(text=raw, intervals=((None, False, bound, op == "<="),), serial=True)
        if op == ">=":
            return VersionSpec(text=raw, intervals=((bound, True, None, False),), serial=True)
        return VersionSpec(text=raw)
    # Other dimensions written beside the version ("and Function State (FS) <= 9") are not
    # versions: only what comes before them is read.
    parts = _OTHER_DIMENSION_RE.split(body, maxsplit=1)
    conditional = len(parts) > 1
    body = re.sub(r"(?i)^\s*(all\s+)?versions?\b", "", parts[0])
    if not body.strip() or _ALL_RE.match(body):
        return VersionSpec(text=raw, every=True, conditional=conditional)
    items = [item for item in re.split(r"\s*\|\s*", body) if item.strip()]
    if len(items) > 1 and all(_LIST_ITEM_RE.match(item) for item in items):
        return VersionSpec(
            text=raw, points=tuple(_version_of(i) for i in items), conditional=conditional
        )
    between = _BETWEEN_RE.search(body)
    if between is not None:
        low, low_kind, high, high_kind = between.groups()
        interval = (
            _version_of(low),
            low_kind.casefold() == "including",
            _version_of(high),
            high_kind.casefold() == "including",
        )
        return VersionSpec(text=raw, intervals=(interval,), conditional=conditional)
    bounds: list[tuple[str, Version]] = []
    for op, number in _COMPARATOR_RE.findall(body):
        bounds.append(({"≤": "<=", "≥": ">="}.get(op, op), _version_of(number)))
    for number in _AND_PRIOR_RE.findall(body):
        bounds.append(("<=", _version_of(number)))
    for word, number in _PRIOR_TO_RE.findall(body):
        inclusive = word.casefold() in ("up to", "through", "until")
        bounds.append(("<=" if inclusive else "<", _version_of(number)))
    span = _SPAN_RE.fullmatch(body)
    if not bounds and span is not None and "(" not in body:
        bounds = [(">=", _version_of(span.group(1))), ("<=", _version_of(span.group(2)))]
    if not bounds:
        version = parse_version(body)
        if version is not None and re.fullmatch(r"\s*" + _V + r"\s*", body, re.I):
            return VersionSpec(text=raw, points=(version,), conditional=conditional)
        return VersionSpec(text=raw)
    intervals: list[Interval] = []
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
