"""Device families (families.yaml): which family a device is in, and whether a product names it.

The knowledge is data; this module loads and checks it (a bad pattern or an unknown key fails at
import, naming the entry) and answers two questions:

- :meth:`FamilyBook.of` — the families a device belongs to, from its names;
- :meth:`FamilyBook.named_by` — whether an advisory's product name names one of those families
  as a whole (see families.yaml for the rule), and with which version line written in the name.

:func:`parse_families` reads a document of the same format (a family pack the coordinator
published, family_packs.py) and :func:`overlay` lays one book over another.
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml

from cybermission.findings.advisories.normalise import chunks, compact, vendor_key

FAMILIES_FILE: Final = Path(__file__).with_name("families.yaml")
_ENTRY_KEYS: Final = frozenset({"vendor", "family", "members", "names", "vendors", "source"})
# Words that describe without telling products apart: "CPU family", "series", "controllers".
FILLER: Final = frozenset(
    {
        "all",
        "and",
        "cpu",
        "cpus",
        "controller",
        "controllers",
        "devices",
        "families",
        "family",
        "firmware",
        "for",
        "models",
        "module",
        "modules",
        "of",
        "or",
        "plc",
        "plcs",
        "processor",
        "processors",
        "products",
        "series",
        "the",
    }
)
# A version line written in a product name: "V16", "V4.7", "V6 and below", a trailing "4.6".
_NAME_LINE_RE: Final = re.compile(
    r"(?i)(?<![0-9a-z])v(\d+(?:\.(?:\d+|x))*)(?![0-9a-z])"
    r"(\s+and\s+(?:below|earlier|prior|older)|\s+or\s+(?:earlier|lower))?"
)
_TRAILING_LINE_RE: Final = re.compile(r"(?<=\s)(\d+\.\d+(?:\.\d+)*)\s*$")
_PARENS_RE: Final = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")


@dataclass(frozen=True, slots=True)
class Family:
    vendor: str  # vendor key
    name: str
    members: tuple[re.Pattern[str], ...]
    names: tuple[tuple[str, ...], ...]  # word runs, filler removed
    vendors: tuple[str, ...]  # every vendor key it is published under
    source: str


@dataclass(frozen=True, slots=True)
class NameLine:
    """A version line a product name carries: "V7" (that line) or "V6 and below" (up to it)."""

    text: str
    and_below: bool


def name_lines(text: str) -> tuple[NameLine, ...]:
    """The version lines ``text`` (a product name) writes with a "V": "V16", "V6 and below"."""
    return tuple(NameLine(m.group(1), bool(m.group(2))) for m in _NAME_LINE_RE.finditer(text))


@dataclass(frozen=True, slots=True)
class FamilyBook:
    families: tuple[Family, ...]
    brands: dict[str, frozenset[str]]
    aliases: dict[str, tuple[tuple[re.Pattern[str], str], ...]]

    def of(self, vendor: str, names: tuple[str, ...]) -> tuple[Family, ...]:
        """The families whose member patterns one of ``names`` (compacted) matches."""
        compacted = [compact(n) for n in names]
        return tuple(
            family
            for family in self.families
            if vendor in family.vendors
            and any(p.search(c) for p in family.members for c in compacted)
        )

    def alias_names(self, vendor: str, names: tuple[str, ...]) -> tuple[str, ...]:
        """The other spellings of ``names`` this vendor's advisories use ("TSXP574634")."""
        found: list[str] = []
        for pattern, replacement in self.aliases.get(vendor, ()):
            for name in names:
                value = compact(name)
                if pattern.search(value):
                    found.append(pattern.sub(replacement, value))
        return tuple(found)

    def named_by(
        self, product: str, product_vendor: str, family: Family
    ) -> tuple[bool, tuple[NameLine, ...]]:
        """Whether ``product`` names ``family`` as a whole, and the version lines it writes."""
        text = _PARENS_RE.sub(" ", product)
        lines = list(name_lines(text))
        text = _NAME_LINE_RE.sub(" ", text)
        trailing = _TRAILING_LINE_RE.search(text)
        if trailing is not None:
            lines.append(NameLine(trailing.group(1), and_below=False))
            text = text[: trailing.start()]
        skip = (
            FILLER | self.brands.get(family.vendor, frozenset()) | frozenset(chunks(product_vendor))
        )
        for key in family.vendors:
            skip |= frozenset(key.split()) | self.brands.get(key, frozenset())
        words = [w for w in chunks(text.replace("-", " ")) if w not in skip]
        if not words:
            return False, ()
        siblings = [
            run
            for other in self.families
            if other is not family and set(other.vendors) & set(family.vendors)
            for run in other.names
        ]
        own = sorted(family.names, key=len, reverse=True)
        others = sorted(siblings, key=len, reverse=True)
        used_own = False
        index = 0
        while index < len(words):
            for run in own:
                if run and tuple(words[index : index + len(run)]) == run:
                    index += len(run)
                    used_own = True
                    break
            else:
                for run in others:
                    if run and tuple(words[index : index + len(run)]) == run:
                        index += len(run)
                        break
                else:
                    return False, ()
        return used_own, tuple(lines)


def _runs(names: list[Any], skip: frozenset[str], where: str) -> tuple[tuple[str, ...], ...]:
    runs: list[tuple[str, ...]] = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: names must be non-empty strings, got {name!r}")
        run = tuple(w for w in chunks(name.replace("-", " ")) if w not in skip)
        if run:
            runs.append(run)
    return tuple(runs)


def load_families(path: Path = FAMILIES_FILE) -> FamilyBook:
    """Read and check families.yaml: ValueError naming the entry on anything malformed."""
    return parse_families(path.read_text(encoding="utf-8"), source=path.name)


def parse_families(text: str, *, source: str, known: "FamilyBook | None" = None) -> FamilyBook:
    """Check a families document (families.yaml's format) and read it: ValueError naming
    ``source`` and the entry on anything malformed (a family named twice included). The brand
    words of ``known`` (the book it will be laid over) count as the document's own too."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("families"), list):
        raise ValueError(f"{source}: expected a mapping with a 'families' list")  # noqa: TRY004
    unknown_top = set(data) - {"brands", "aliases", "families"}
    if unknown_top:
        raise ValueError(f"{source}: unknown keys {sorted(unknown_top)}")
    brands = _brands(data.get("brands"), source)
    for vendor, words in (known.brands if known else {}).items():
        brands[vendor] = brands.get(vendor, frozenset()) | words
    families: list[Family] = []
    seen: set[tuple[str, str]] = set()
    for index, raw in enumerate(data["families"]):
        family = _family(raw, brands, f"{source} families[{index}]")
        if (family.vendor, family.name) in seen:
            raise ValueError(f"{source} families[{index}]: {family.name!r} appears twice")
        seen.add((family.vendor, family.name))
        families.append(family)
    return FamilyBook(
        families=tuple(families), brands=brands, aliases=_aliases(data.get("aliases"), source)
    )


def _brands(raw: object, source: str) -> dict[str, frozenset[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(w, list) for w in raw.values()):
        raise ValueError(f"{source} brands: expected a mapping of vendor to a list of words")
    return {
        vendor_key(str(vendor)): frozenset(str(w).casefold() for w in words)
        for vendor, words in raw.items()
    }


def _aliases(raw: object, source: str) -> dict[str, tuple[tuple[re.Pattern[str], str], ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{source} aliases: expected a mapping of vendor to a list")  # noqa: TRY004
    aliases: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {}
    for vendor, items in raw.items():
        where = f"{source} aliases[{vendor!r}]"
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and set(i) == {"pattern", "alias"} for i in items
        ):
            raise ValueError(f"{where}: expected a list of {{pattern, alias}}")
        try:
            aliases[vendor_key(str(vendor))] = tuple(
                (re.compile(str(item["pattern"])), str(item["alias"])) for item in items
            )
        except re.error as exc:
            raise ValueError(f"{where}: bad pattern ({exc})") from exc
    return aliases


def _family(raw: object, brands: dict[str, frozenset[str]], where: str) -> Family:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping")  # noqa: TRY004 (a malformed file)
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("vendor", "family", "source"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValueError(f"{where}: '{key}' must be a non-empty string")
    members = raw.get("members")
    if not isinstance(members, list) or not members:
        raise ValueError(f"{where}: 'members' must be a non-empty list of patterns")
    try:
        patterns = tuple(re.compile(str(m)) for m in members)
    except re.error as exc:
        raise ValueError(f"{where}: bad member pattern ({exc})") from exc
    names = raw.get("names") or []
    vendors = raw.get("vendors") or []
    if not isinstance(names, list) or not isinstance(vendors, list):
        raise ValueError(f"{where}: 'names' and 'vendors' must be lists")  # noqa: TRY004
    vendor = vendor_key(raw["vendor"])
    skip = FILLER | brands.get(vendor, frozenset()) | frozenset(vendor.split())
    return Family(
        vendor=vendor,
        name=raw["family"],
        members=patterns,
        names=_runs(names, skip, where),
        vendors=(vendor, *(vendor_key(str(v)) for v in vendors)),
        source=raw["source"],
    )


def overlay(base: FamilyBook, over: FamilyBook) -> FamilyBook:
    """``base`` with ``over``'s knowledge added: a family of the same vendor and name replaces
    base's (a correction), brand words add up, a vendor's aliases are over's when it has some."""
    replaced = {(f.vendor, f.name) for f in over.families}
    brands = dict(base.brands)
    for vendor, words in over.brands.items():
        brands[vendor] = brands.get(vendor, frozenset()) | words
    return FamilyBook(
        families=(
            *(f for f in base.families if (f.vendor, f.name) not in replaced),
            *over.families,
        ),
        brands=brands,
        aliases={**base.aliases, **over.aliases},
    )


@cache
def family_book() -> FamilyBook:
    """The shipped families.yaml, read once."""
    return load_families()
