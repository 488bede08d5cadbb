"""Normalise what devices and advisories say: vendor aliases, part numbers, versions and ranges.

Device strings and CSAF product trees name the same thing differently: "Schneider Electric
Software, LLC" and "Telemecanique", "BMX P34 2020" and "BMXP34*", "v2.70" and "< SV3.51",
``vers:all/<V4.3.8`` (the ``vers:`` syntax of the Package URL project, as CISA writes it).
"""

import re
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
    "schweitzer engineering laboratories": "sel",
    "schweitzer": "sel",
    "sel": "sel",
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
