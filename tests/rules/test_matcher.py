"""Matcher semantics: AND/OR/any/all/not, every modifier, and missing fields that never raise."""

from collections.abc import Mapping

import pytest
import re2

from cybermission.errors import RuleError
from cybermission.rules.matcher import (
    MISSING,
    REGEX_MEMO_CHARS,
    compile_match,
    match_fields,
    resolve,
)

DOC: dict[str, object] = {
    "probe": "modbus",
    "protocol": "modbus",
    "target": {"address": "127.20.0.5", "port": 502, "transport": "tcp"},
    "facts": {
        "vendor": "Schneider Electric",
        "product_code": "BMX P34 2020",
        "revision": "v2.5",
        "unit_ids": [1, 2, 247],
        "policies": ["http://opcfoundation.org/UA/SecurityPolicy#None", "x#Basic256Sha256"],
        "anonymous": True,
        "empty": None,
        "load": 0.75,
    },
    "asset": {"zone": "control", "criticality": "high", "site": None},
}


def holds(match: Mapping[str, object], doc: Mapping[str, object] = DOC) -> bool:
    return compile_match(match)(doc)


def test_matcher_mapping_is_and() -> None:
    assert holds({"facts.vendor": "Schneider Electric", "target.port": 502})
    assert not holds({"facts.vendor": "Schneider Electric", "target.port": 503})


def test_matcher_value_list_is_or() -> None:
    assert holds({"target.port": [102, 502]})
    assert not holds({"target.port": [102, 44818]})


def test_matcher_all_modifier_requires_every_value() -> None:
    assert holds({"facts.product_code|contains|all": ["BMX", "2020"]})
    assert not holds({"facts.product_code|contains|all": ["BMX", "M580"]})


def test_matcher_any_all_not_nest() -> None:
    match = {
        "any": [
            {"facts.vendor": "Siemens"},
            {"all": [{"target.port": 502}, {"asset.zone": "control"}]},
        ],
        "not": {"facts.anonymous": False},
    }
    assert holds(match)
    assert not holds({"not": {"facts.vendor|startswith": "schneider"}})
    assert not holds({"all": [{"target.port": 502}, {"asset.zone": "enterprise"}]})


def test_matcher_strings_ignore_case_unless_cased() -> None:
    assert holds({"facts.vendor": "schneider electric"})
    assert not holds({"facts.vendor|cased": "schneider electric"})
    assert holds({"facts.vendor|in": ["siemens", "SCHNEIDER ELECTRIC"]})
    assert not holds({"facts.vendor|in|cased": ["siemens", "SCHNEIDER ELECTRIC"]})


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({"facts.vendor|contains": "electric"}, True),
        ({"facts.vendor|startswith": "Schn"}, True),
        ({"facts.vendor|endswith": "tric"}, True),
        ({"facts.vendor|endswith": "Schn"}, False),
        ({"facts.revision|re": r"^v2\.[0-9]+$"}, True),
        ({"facts.revision|re": r"^V2"}, False),
        ({"facts.revision|re": r"(?i)^V2"}, True),
        ({"facts.load|gt": 0.5}, True),
        ({"facts.load|gte": 0.75}, True),
        ({"facts.load|lt": 0.75}, False),
        ({"facts.load|lte": 0.75}, True),
        ({"target.address|cidr": "127.20.0.0/16"}, True),
        ({"target.address|cidr": ["10.0.0.0/8", "192.168.0.0/16"]}, False),
        ({"facts.vendor|exists": True}, True),
        ({"facts.empty|exists": True}, False),
        ({"facts.empty|exists": False}, True),
        ({"facts.absent|exists": False}, True),
    ],
)
def test_matcher_modifier(match: dict[str, object], expected: bool) -> None:
    assert holds(match) is expected


def test_matcher_list_field_matches_any_element() -> None:
    assert holds({"facts.unit_ids": 247})
    assert holds({"facts.policies|endswith|cased": "#None"})
    assert not holds({"facts.unit_ids": 3})


def test_matcher_types_are_not_coerced() -> None:
    # a boolean is not the number 1, and the string "502" is not the port 502
    assert not holds({"facts.anonymous": 1})
    assert not holds({"target.port": "502"})
    assert not holds({"facts.vendor|gt": 1})
    assert not holds({"target.port|contains": "50"})


def test_matcher_null_matches_absent_or_null() -> None:
    assert holds({"facts.empty": None})
    assert holds({"facts.absent": None})
    assert holds({"asset.site": [None, "north"]})
    assert not holds({"facts.vendor": None})


@pytest.mark.parametrize(
    "match",
    [
        {"facts.absent": "x"},
        {"facts.absent|contains": "x"},
        {"facts.absent|re": "x"},
        {"facts.absent|gt": 1},
        {"facts.absent|cidr": "10.0.0.0/8"},
        {"nothing.here.at.all": 1},
        {"facts.vendor.deeper": "x"},
        {"target.address|cidr": "10.0.0.0/8", "facts.vendor|cidr": "10.0.0.0/8"},
    ],
)
def test_matcher_missing_or_odd_fields_never_raise(match: dict[str, object]) -> None:
    assert holds(match) is False
    assert holds(match, {}) is False
    assert holds(match, {"facts": None, "target": [1, 2]}) is False


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ({"facts.vendor|regex": "x"}, "unknown modifier 'regex'"),
        ({"facts.vendor|re": "(unclosed"}, "bad regular expression"),
        ({"facts.vendor|re": r"(?<=a)b"}, "bad regular expression"),
        ({"facts.vendor|exists": "yes"}, "'exists' takes true or false"),
        ({"facts.load|gt": "high"}, "takes a number"),
        ({"target.address|cidr": "10.0.0.300/8"}, "bad network"),
        ({"facts.vendor|contains|startswith": "x"}, "at most one operator"),
        ({"facts.vendor": {"nested": 1}}, "values must be scalars"),
        ({"facts.vendor|in": "x"}, "'in' takes a list"),
        ({"any": {"facts.vendor": "x"}}, "'any' takes a non-empty list"),
        ({"not": []}, "'not' takes a non-empty mapping"),
        ({"facts..vendor": "x"}, "empty segment"),
        ({}, "non-empty mapping"),
    ],
)
def test_matcher_bad_block_raises_rule_error(match: dict[str, object], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        compile_match(match, source="r.yaml")


def test_matcher_error_names_the_condition_path() -> None:
    with pytest.raises(RuleError) as info:
        compile_match({"any": [{"facts.x": 1}, {"facts.y|bogus": 1}]}, source="r.yaml")
    assert str(info.value).startswith("r.yaml: match.any.1.facts.y|bogus: unknown modifier")


def test_matcher_path_through_a_list_collects_each_element() -> None:
    doc = {"facts": {"units": [{"unit_id": 1}, {"unit_id": 2, "vendor": "Schneider"}, 7]}}
    assert resolve(doc, ("facts", "units", "vendor")) == ["Schneider"]
    assert resolve(doc, ("facts", "units", "model")) is MISSING
    assert holds({"facts.units.vendor|exists": True}, doc)
    assert holds({"facts.units.unit_id|gte": 2}, doc)
    assert not holds({"facts.units.unit_id|gt": 2}, doc)
    assert not holds({"facts.units.model|exists": True}, doc)


def test_matcher_match_fields_lists_every_field_once() -> None:
    match = {
        "facts.vendor|contains": "x",
        "any": [{"facts.vendor": "y"}, {"target.port|gt": 1}],
        "not": {"asset.zone": "control"},
    }
    assert match_fields(match) == ("facts.vendor", "target.port", "asset.zone")


class _CountingPattern:
    """An RE2 pattern that records the texts it is asked to search."""

    def __init__(self, pattern: object, asked: list[str]) -> None:
        self._pattern = pattern
        self._asked = asked

    def search(self, text: str) -> object:
        self._asked.append(text)
        return self._pattern.search(text)  # type: ignore[attr-defined]


def test_matcher_regex_searches_a_repeated_short_text_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Devices of one model repeat their texts (issue 12): the verdict is kept per text, with
    the same answers; texts longer than REGEX_MEMO_CHARS are searched every time."""
    asked: list[str] = []
    real = re2.compile
    monkeypatch.setattr(
        re2, "compile", lambda pattern, options: _CountingPattern(real(pattern, options), asked)
    )
    predicate = compile_match({"facts.title|re": "(?i)hmi"})
    long_title = "HMI " + "x" * REGEX_MEMO_CHARS
    titles = ["Web HMI", "Web HMI", "Printer", "Web HMI", "Printer", long_title, long_title]
    verdicts = [predicate({"facts": {"title": title}}) for title in titles]
    assert verdicts == [True, True, False, True, False, True, True]
    assert asked == ["Web HMI", "Printer", long_title, long_title]
