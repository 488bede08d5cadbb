"""The labelled device/advisory set of issue 13 (labelled_set.yaml), read into typed records.

The file is data for measuring the advisory matcher; this module only parses and checks its shape.
It imports nothing from the matcher, so the labels stay independent of it.
"""

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

LABELLED_SET = Path(__file__).with_name("labelled_set.yaml")

_DEVICE_KEYS = frozenset(
    {
        "id",
        "vendor",
        "firmware",
        "names",
        "family",
        "seen_in_tests",
        "complete",
        "affected",
        "not_affected",
        "ambiguous",
    }
)


class Reason(StrEnum):
    """Why a pair that looks related does not affect the device."""

    FIXED_EARLIER = "fixed-earlier"
    BOUNDARY = "boundary"
    NOT_IN_RANGE = "not-in-range"
    LOOK_ALIKE = "look-alike"
    OTHER_FAMILY = "other-family"
    ENGINEERING_SOFTWARE = "engineering-software"


class PairClass(StrEnum):
    """What a pair exercises (the misses issue 13 names, plus the direct baseline)."""

    FAMILY = "family"
    X_WILDCARD = "x-wildcard"
    INNER_SPACE = "inner-space"
    PART_NUMBER_IN_VERSION = "part-number-in-version"
    VERSION_SEMANTICS = "version-semantics"
    TEXT_MENTION = "text-mention"
    PART_NUMBER = "part-number"
    NAME = "name"
    LOOK_ALIKE = "look-alike"


@dataclass(frozen=True, slots=True)
class Label:
    """One scored pair: the advisory affects the device or, with a reason, does not."""

    advisory: str
    affected: bool
    why: str
    classes: tuple[PairClass, ...]
    reason: Reason | None


@dataclass(frozen=True, slots=True)
class Ambiguous:
    """A pair the advisory does not settle; left out of precision and recall."""

    advisory: str
    why: str


@dataclass(frozen=True, slots=True)
class LabelledDevice:
    """A device identity as a scanner reports it, with its labelled advisories."""

    id: str
    vendor: str
    firmware: str
    names: tuple[str, ...]
    family: str
    seen_in_tests: bool
    complete: bool
    labels: tuple[Label, ...]
    ambiguous: tuple[Ambiguous, ...]

    @property
    def affected(self) -> frozenset[str]:
        return frozenset(label.advisory for label in self.labels if label.affected)

    @property
    def not_affected(self) -> frozenset[str]:
        return frozenset(label.advisory for label in self.labels if not label.affected)


def load_labelled_set(path: Path = LABELLED_SET) -> tuple[LabelledDevice, ...]:
    """Every device of the file; ValueError naming the device and field on a malformed entry."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise ValueError(f"{path}: expected a mapping with a 'devices' list")
    return tuple(_device(raw, index) for index, raw in enumerate(data["devices"]))


def _device(raw: Any, index: int) -> LabelledDevice:
    if not isinstance(raw, dict):
        raise ValueError(f"device #{index}: expected a mapping")
    where = f"device {raw.get('id', f'#{index}')!r}"
    unknown = set(raw) - _DEVICE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    names = raw.get("names")
    if not isinstance(names, list) or not names:
        raise ValueError(f"{where}: 'names' must be a non-empty list of strings")
    labels = tuple(
        _label(entry, where, affected=True) for entry in _entries(raw, "affected", where)
    ) + tuple(
        _label(entry, where, affected=False) for entry in _entries(raw, "not_affected", where)
    )
    ambiguous = tuple(
        Ambiguous(_text(entry, "id", where), _text(entry, "why", where))
        for entry in _entries(raw, "ambiguous", where)
    )
    return LabelledDevice(
        id=_text(raw, "id", where),
        vendor=_text(raw, "vendor", where),
        firmware=_text(raw, "firmware", where),
        names=tuple(_string(name, f"{where} names") for name in names),
        family=_text(raw, "family", where),
        seen_in_tests=_flag(raw, "seen_in_tests", where),
        complete=_flag(raw, "complete", where),
        labels=labels,
        ambiguous=ambiguous,
    )


def _label(entry: dict[str, Any], where: str, *, affected: bool) -> Label:
    advisory = _text(entry, "id", where)
    at = f"{where} {advisory}"
    classes = entry.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ValueError(f"{at}: 'classes' must be a non-empty list")
    if affected and "reason" in entry:
        raise ValueError(f"{at}: an affected pair takes no 'reason'")
    reason = None if affected else Reason(_text(entry, "reason", at))
    return Label(
        advisory=advisory,
        affected=affected,
        why=_text(entry, "why", at),
        classes=tuple(PairClass(_string(name, f"{at} classes")) for name in classes),
        reason=reason,
    )


def _entries(raw: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    entries = raw.get(key) or []
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ValueError(f"{where}: '{key}' must be a list of mappings")
    return entries


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    return _string(raw.get(key), f"{where} '{key}'")


def _string(value: Any, where: str) -> str:
    # YAML reads 2.42 as a float and 1420 as an int: versions and part numbers must be quoted.
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _flag(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"{where} '{key}': expected true or false, got {value!r}")
    return value
