"""Product notations of advisories: names compacted for comparison, with digit placeholders.

Advisories and devices write the same model differently: with inner spaces ("140 CPU 651 50",
"Q06 UDEHCPU", "2080 -L50E"), with placeholders for digits ("140CPU65xxxxx", "ILC 1x1",
"1756-L8z", "CS1H-CPU □ □ H", "CS1H/G-CPU**H", "FX5U-xMy/z", "FL SWITCH 3xxx"), with sibling
lists ("AFS660/665C", "CS1H/G", "R04/08/16(EN)CPU") and with part numbers in the version branch
of the product tree ("GATE-E2" > "GATE-E1 (EOL 2013)", "750-852 | 750-881 | 750-889").

A :class:`Notation` is a name reduced to its letters and digits (case-folded), each placeholder run
one wildcard unit that stands for one or more characters, and the positions where words start and
end. :func:`align` finds a device name inside a product name on word boundaries.
"""

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

WILD: Final = "?"  # one unit that stands for one or more letters or digits
_PLACEHOLDERS: Final = frozenset("*□?")
_DIGIT_X: Final = frozenset("xXzZ")
_LOWER_PLACEHOLDERS: Final = frozenset("xyzn")


@dataclass(frozen=True, slots=True)
class Notation:
    """A name as compared: units (letters, digits, :data:`WILD`) and word boundaries."""

    text: str
    units: str
    # Positions 0..len(units) at which a word starts or ends.
    bounds: frozenset[int]

    @property
    def has_wild(self) -> bool:
        return WILD in self.units


def _placeholder_flags(text: str) -> list[bool]:
    flags = [False] * len(text)
    text = text.replace("[]", "□ ")
    for index, char in enumerate(text):
        if char in _PLACEHOLDERS:
            flags[index] = True
    # "3xxx", "1x1", "65xxxxx", "L8z", "R16x": x or z after a digit (or a placeholder), the run
    # not followed by a letter ("8xM12" is "8 times M12", not a placeholder).
    index = 0
    while index < len(text):
        if text[index] in _DIGIT_X and index > 0 and (text[index - 1].isdigit()):
            end = index
            while end < len(text) and text[end] in _DIGIT_X:
                end += 1
            if end == len(text) or not text[end].isalpha():
                for k in range(index, end):
                    flags[k] = True
            index = end
            continue
        index += 1
    # "FX5U-xMy/z": a lone lower-case x, y, z or n in a word otherwise written in capitals.
    for word in re.finditer(r"\S+", text):
        token = word.group(0)
        letters = [c for c in token if c.isalpha()]
        if sum(c.isupper() for c in letters) < 2:
            continue
        for offset, char in enumerate(token):
            if char not in _LOWER_PLACEHOLDERS:
                continue
            before = token[offset - 1] if offset else ""
            after = token[offset + 1] if offset + 1 < len(token) else ""
            if not before.islower() and not after.islower():
                flags[word.start() + offset] = True
    return flags


@lru_cache(maxsize=65536)
def notation(text: str) -> Notation:
    """The compared form of a name: "140CPU65xxxxx" -> "140cpu65?", "FL SWITCH 3xxx" ->
    "flswitch3?", "SCALANCE X204 IRT" -> "scalancex204irt" with boundaries after each word."""
    text = text.replace("[]", "□ ")
    flags = _placeholder_flags(text)
    units: list[str] = []
    bounds: set[int] = {0}
    for char, wild in zip(text, flags, strict=True):
        if wild:
            if not units or units[-1] != WILD:
                units.append(WILD)
            continue
        if char.isalnum() and char.isascii():
            units.append(char.casefold())
        else:
            bounds.add(len(units))
    bounds.add(len(units))
    return Notation(text=text, units="".join(units), bounds=frozenset(bounds))


def align(device: Notation, product: Notation, start: int) -> list[tuple[int, int]]:
    """Every (device end, product end) where ``device.units[:end]`` spells ``product.units``
    from ``start``: letters and digits equal, a wildcard taking one or more of the device's."""
    d, p = device.units, product.units
    if WILD not in p:
        # No placeholder: the common run of letters and digits, every length of it.
        size = 0
        limit = min(len(d), len(p) - start)
        while size < limit and d[size] == p[start + size]:
            size += 1
        return [(end, start + end) for end in range(1, size + 1)]
    found: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    stack = [(0, start)]
    while stack:
        di, pi = stack.pop()
        if (di, pi) in seen:
            continue
        seen.add((di, pi))
        if di > 0:
            found.append((di, pi))
        if di >= len(d) or pi >= len(p):
            continue
        unit = p[pi]
        if unit == WILD:
            stack.append((di + 1, pi))
            stack.append((di + 1, pi + 1))
        elif unit == d[di]:
            stack.append((di + 1, pi + 1))
    return found


@lru_cache(maxsize=65536)
def is_model(units: str) -> bool:
    """Letters and digits mixed, or a long article number: a name that identifies a model."""
    plain = units.replace(WILD, "")
    digits = sum(c.isdigit() for c in plain)
    letters = sum(c.isalpha() for c in plain)
    return (digits >= 1 and letters >= 1 and len(plain) >= 3) or (digits >= 7 and letters == 0)


_SIBLING_RE: Final = re.compile(r"(?<![0-9A-Za-z])([0-9A-Za-z]+)/([0-9A-Za-z]+)(?![0-9A-Za-z])")


def siblings(name: str) -> tuple[str, ...]:
    """Names a slash list stands for, beside the name itself: "CS1H/G-CPU**H" is "CS1H-CPU**H"
    and "CS1G-CPU**H"; "AFS660/665C" is "AFS660" and "AFS665C"; "Micro850/870" is "Micro870";
    a shorter second half replaces the end of the first."""
    variants: list[str] = []
    for found in _SIBLING_RE.finditer(name):
        first, second = found.groups()
        if len(second) <= len(first) and any(c.isdigit() for c in first + second):
            alternative = first[: len(first) - len(second)] + second
        elif len(second) == 1 < len(first):
            alternative = first[:-1] + second
        else:
            continue
        head, tail = name[: found.start()], name[found.end() :]
        for choice in (first, alternative):
            variant = head + choice + tail
            if variant not in variants:
                variants.append(variant)
    return tuple(variants)


_VERSION_ITEM_RE: Final = re.compile(r"(?i)^\s*(v|r|fw|sv)?\s*\d+([.\-_]\d+)*[a-z]?\s*$")


def models_in_version(version: str | None) -> tuple[str, ...]:
    """Part or model numbers that a product tree put in its version branch ("GATE-E1 (EOL
    2013)", "750-852 | 750-831/xxx-xxx | 750-881", "CP401 | CP451"): none when it is a version."""
    if not version or version.casefold().startswith("vers:"):
        return ()
    items = [item.strip() for item in version.split("|") if item.strip()]
    models: list[str] = []
    for item in items:
        if _VERSION_ITEM_RE.match(item) or re.search(r"[<>=]", item):
            return ()
        head = re.split(r"\s*\(", item)[0].strip()
        first = head.split()[0] if head.split() else ""
        units = notation(first).units
        if "-" in first or is_model(units):
            models.append(first)
    return tuple(models) if models and len(models) == len(items) else ()
