"""Compile a rule's ``match`` block (Sigma semantics) once into a fast predicate over a document.

Semantics, as in Sigma (https://sigmahq.io/docs/basics/modifiers.html):

- a mapping is an AND of its entries;
- ``field|modifier: [v1, v2]`` is an OR over the values (``|all`` turns it into an AND);
- ``any: [{...}, ...]`` is an OR of mappings, ``all: [{...}, ...]`` an AND, ``not: {...}`` negates;
- string comparisons ignore case unless ``|cased`` is given; ``re`` is case-sensitive (``(?i)``);
- a field holding a list matches when one of its elements matches;
- a missing field never raises: it simply does not match (and ``field: null`` matches it).

Regular expressions run on RE2 (linear time), because the strings come from devices.
"""

import functools
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeGuard, TypeVar

import re2

from cybermission.errors import RuleError

Loc: TypeAlias = tuple[str | int, ...]
Predicate: TypeAlias = Callable[[Mapping[str, object]], bool]
ValueTest: TypeAlias = Callable[[object], bool]
_T = TypeVar("_T")

# Document locations (path inside the YAML file) to line numbers; the loader provides it.
LineOf: TypeAlias = Callable[[Loc], int | None]

KEYWORDS = frozenset({"any", "all", "not"})
OPERATORS = frozenset(
    {
        "eq",
        "exists",
        "contains",
        "startswith",
        "endswith",
        "re",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "cidr",
    }
)
FLAGS = frozenset({"all", "cased"})
# Regular expression verdicts remembered per pattern: how many texts, and up to what length.
REGEX_MEMO_TEXTS = 256
REGEX_MEMO_CHARS = 256
MODIFIERS = OPERATORS | FLAGS


class _Missing:
    """The value of a field the document does not have (distinct from an explicit null)."""

    __slots__ = ()


MISSING = _Missing()


def _no_line(_loc: Loc) -> int | None:
    return None


@dataclass(frozen=True, slots=True)
class _Context:
    source: str
    line_of: LineOf

    def error(self, loc: Loc, message: str) -> RuleError:
        where = ".".join(str(part) for part in loc)
        return RuleError(self.source, self.line_of(loc), f"{where}: {message}")


def compile_match(
    match: object, *, source: str = "<rule>", line_of: LineOf = _no_line, loc: Loc = ("match",)
) -> Predicate:
    """Compile ``match`` into a predicate; a bad block raises :class:`RuleError` with its line."""
    ctx = _Context(source, line_of)
    if not isinstance(match, Mapping) or not match:
        raise ctx.error(loc, "expected a non-empty mapping of conditions")
    return _compile_mapping(match, ctx, loc)


def resolve(doc: Mapping[str, object], path: tuple[str, ...]) -> object:
    """The value at a dotted path, or :data:`MISSING` when any step is absent.

    A step through a list of mappings collects the field from each element (``facts.units.vendor``
    gives the vendor of every unit), so the list rule then applies: one element matching is enough.
    """
    value: object = doc
    for depth, part in enumerate(path):
        # dict first: the documents are dicts, and a check against the Mapping ABC costs
        # several times more (every field test of every rule resolves a path).
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(part, MISSING)
            if value is MISSING:
                return MISSING
        elif isinstance(value, list):
            rest = path[depth:]
            found: list[object] = []
            for item in value:
                if isinstance(item, Mapping):
                    hit = resolve(item, rest)
                    if isinstance(hit, list):
                        found.extend(hit)
                    elif hit is not MISSING and hit is not None:
                        found.append(hit)
            return found if found else MISSING
        else:
            return MISSING
    return value


def match_fields(match: Mapping[str, object]) -> tuple[str, ...]:
    """The dotted field paths a (valid) ``match`` block reads, in order, each once."""
    fields: dict[str, None] = {}

    def walk(block: object) -> None:
        if isinstance(block, Mapping):
            for key, value in block.items():
                if key in KEYWORDS:
                    walk(value)
                elif isinstance(key, str):
                    fields.setdefault(key.split("|", 1)[0], None)
        elif isinstance(block, list):
            for item in block:
                walk(item)

    walk(match)
    return tuple(fields)


def _compile_mapping(match: Mapping[object, object], ctx: _Context, loc: Loc) -> Predicate:
    parts: list[Predicate] = []
    for key, value in match.items():
        if not isinstance(key, str) or not key:
            raise ctx.error(loc, f"condition keys must be non-empty strings, got {key!r}")
        here = (*loc, key)
        if key in KEYWORDS:
            parts.append(_compile_keyword(key, value, ctx, here))
        else:
            parts.append(_compile_field(key, value, ctx, here))
    return _every(parts)


# A rule's predicate runs on every observation of its protocol: plain loops, not ``all``/``any``
# over a generator, whose set-up cost more than the tests themselves. Same short-circuit order.
def _every(parts: Sequence[Callable[[_T], bool]]) -> Callable[[_T], bool]:
    if len(parts) == 1:
        return parts[0]
    frozen = tuple(parts)

    def every(doc: _T) -> bool:
        for part in frozen:  # noqa: SIM110 (a loop, see above)
            if not part(doc):
                return False
        return True

    return every


def _some(parts: Sequence[Callable[[_T], bool]]) -> Callable[[_T], bool]:
    frozen = tuple(parts)

    def some(doc: _T) -> bool:
        for part in frozen:  # noqa: SIM110 (a loop, see above)
            if part(doc):
                return True
        return False

    return some


def _compile_keyword(key: str, value: object, ctx: _Context, loc: Loc) -> Predicate:
    if key == "not":
        if not isinstance(value, Mapping) or not value:
            raise ctx.error(loc, "'not' takes a non-empty mapping of conditions")
        inner = _compile_mapping(value, ctx, loc)
        return lambda doc: not inner(doc)
    if not isinstance(value, list) or not value:
        raise ctx.error(loc, f"'{key}' takes a non-empty list of mappings")
    subs: list[Predicate] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or not item:
            raise ctx.error((*loc, index), "expected a non-empty mapping of conditions")
        subs.append(_compile_mapping(item, ctx, (*loc, index)))
    if key == "any":
        return _some(subs)
    return _every(subs)


def _compile_field(key: str, value: object, ctx: _Context, loc: Loc) -> Predicate:
    field, *modifiers = key.split("|")
    path = tuple(field.split("."))
    if not all(path):
        raise ctx.error(loc, f"field path {field!r} has an empty segment")
    unknown = [m for m in modifiers if m not in MODIFIERS]
    if unknown:
        raise ctx.error(
            loc, f"unknown modifier {unknown[0]!r} (known: {', '.join(sorted(MODIFIERS))})"
        )
    operators = [m for m in modifiers if m in OPERATORS]
    if len(operators) > 1:
        raise ctx.error(loc, f"at most one operator modifier per field, got {operators}")
    operator = operators[0] if operators else "eq"
    cased = "cased" in modifiers
    require_all = "all" in modifiers

    if operator == "exists":
        if not isinstance(value, bool):
            raise ctx.error(loc, "'exists' takes true or false")
        wanted = value

        def exists(doc: Mapping[str, object]) -> bool:
            found = resolve(doc, path)
            return (found is not MISSING and found is not None) is wanted

        return exists

    values = value if isinstance(value, list) else [value]
    if not values:
        raise ctx.error(loc, "expected at least one value")
    if operator == "in" and not isinstance(value, list):
        raise ctx.error(loc, "'in' takes a list of values")
    tests = [_compile_value(operator, v, cased, ctx, (*loc, i)) for i, v in enumerate(values)]
    if operator in ("eq", "in") and not require_all:
        test = _fast_membership(values, cased) or _any_of(tests)
    else:
        test = _all_of(tests) if require_all else _any_of(tests)
    if None in values and operator in ("eq", "in"):
        # `field: null` (Sigma) matches an absent or null field.
        def absent_or(doc: Mapping[str, object]) -> bool:
            found = resolve(doc, path)
            return found is MISSING or found is None or _on_value(test, found)

        return absent_or
    return lambda doc: _on_value(test, resolve(doc, path))


def _on_value(test: ValueTest, found: object) -> bool:
    if found is MISSING or found is None:
        return False
    if isinstance(found, list):
        for item in found:  # noqa: SIM110 (a loop: _every's comment)
            if test(item):
                return True
        return False
    return test(found)


def _any_of(tests: Sequence[ValueTest]) -> ValueTest:
    if len(tests) == 1:
        return tests[0]
    return _some(tests)


def _all_of(tests: Sequence[ValueTest]) -> ValueTest:
    return _every(tests)


def _fast_membership(values: Sequence[object], cased: bool) -> ValueTest | None:
    """Equality against many strings as one set lookup (the common ``field: [a, b, c]`` case)."""
    strings = [v for v in values if v is not None]
    if len(strings) < 2 or not all(isinstance(v, str) for v in strings):
        return None
    if cased:
        exact = frozenset(strings)
        return lambda v: isinstance(v, str) and v in exact
    folded = frozenset(str(v).casefold() for v in strings)
    return lambda v: isinstance(v, str) and v.casefold() in folded


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compile_value(
    operator: str, expected: object, cased: bool, ctx: _Context, loc: Loc
) -> ValueTest:
    if isinstance(expected, list | dict):
        raise ctx.error(loc, "values must be scalars (string, number, boolean or null)")
    if operator in ("eq", "in"):
        return _compile_equals(expected, cased)
    if operator in ("contains", "startswith", "endswith"):
        if not isinstance(expected, str):
            raise ctx.error(loc, f"'{operator}' takes strings, got {expected!r}")
        return _compile_substring(operator, expected, cased)
    if operator == "re":
        return _compile_regex(expected, ctx, loc)
    if operator in ("gt", "gte", "lt", "lte"):
        if not _is_number(expected):
            raise ctx.error(loc, f"'{operator}' takes a number, got {expected!r}")
        return _compile_order(operator, float(expected))
    return _compile_cidr(expected, ctx, loc)


def _compile_equals(expected: object, cased: bool) -> ValueTest:
    if expected is None:
        return lambda v: False  # handled by the absent-or-null wrapper
    if isinstance(expected, bool):
        return lambda v: isinstance(v, bool) and v is expected
    if _is_number(expected):
        return lambda v: _is_number(v) and v == expected
    text = str(expected)
    if cased:
        return lambda v: isinstance(v, str) and v == text
    folded = text.casefold()
    return lambda v: isinstance(v, str) and v.casefold() == folded


def _compile_substring(operator: str, expected: str, cased: bool) -> ValueTest:
    needle = expected if cased else expected.casefold()

    def norm(v: str) -> str:
        return v if cased else v.casefold()

    if operator == "contains":
        return lambda v: isinstance(v, str) and needle in norm(v)
    if operator == "startswith":
        return lambda v: isinstance(v, str) and norm(v).startswith(needle)
    return lambda v: isinstance(v, str) and norm(v).endswith(needle)


def _compile_regex(expected: object, ctx: _Context, loc: Loc) -> ValueTest:
    if not isinstance(expected, str):
        raise ctx.error(loc, f"'re' takes a pattern string, got {expected!r}")
    options = re2.Options()
    options.log_errors = False  # the error is reported through RuleError, not on stderr
    try:
        pattern = re2.compile(expected, options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ctx.error(loc, f"bad regular expression {expected!r} (RE2): {detail}") from exc
    search = pattern.search

    # Devices of one model answer the same text, and each of their observations meets every
    # pattern of its protocol's rules (end-of-life models, HMI titles): re2's Python wrapper
    # encoding the text and wrapping the match was 7% of a scan batch's writes (issue 12). The
    # verdict is kept per text, short texts only and a bounded number of them per pattern.
    @functools.lru_cache(maxsize=REGEX_MEMO_TEXTS)
    def found(text: str) -> bool:
        return search(text) is not None

    def test(v: object) -> bool:
        if not isinstance(v, str):
            return False
        return found(v) if len(v) <= REGEX_MEMO_CHARS else search(v) is not None

    return test


def _compile_order(operator: str, bound: float) -> ValueTest:
    if operator == "gt":
        return lambda v: _is_number(v) and v > bound
    if operator == "gte":
        return lambda v: _is_number(v) and v >= bound
    if operator == "lt":
        return lambda v: _is_number(v) and v < bound
    return lambda v: _is_number(v) and v <= bound


def _compile_cidr(expected: object, ctx: _Context, loc: Loc) -> ValueTest:
    if not isinstance(expected, str):
        raise ctx.error(loc, f"'cidr' takes a network string, got {expected!r}")
    try:
        network = ipaddress.ip_network(expected, strict=False)
    except ValueError as exc:
        raise ctx.error(loc, f"bad network {expected!r}: {exc}") from exc

    def in_network(v: object) -> bool:
        if not isinstance(v, str):
            return False
        address = _address(v)
        return address is not None and address in network

    return in_network


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an address (None: not one), parsed once for every ``cidr`` test of it: each
    observation of a host meets several such rules (a scan of 1,024 hosts parsed 4,096 times)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
