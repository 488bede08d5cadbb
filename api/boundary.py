"""The one input boundary: text no store can hold or a person can trust is refused at the door.

Every string that reaches the API, in the path, the query or a JSON body, passes here first:

- NUL (PostgreSQL's text cannot hold it: it was a 500 on 14 endpoints), the other C0 and C1
  control characters and DEL (tab, newline and carriage return are ordinary text), and the Unicode
  bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E/U+200F, U+061C: a right-to-left
  override makes ``gpj.exe`` read as ``exe.jpg`` in a scope or asset name) are refused;
- characters that show nothing and tell nothing (zero-width space, word joiner, byte-order mark,
  soft hyphen, Hangul fillers, ...: :data:`_INVISIBLE`) are refused too: ``Café`` and
  ``Café\u200b`` would be two scopes no one can tell apart. Zero-width (non-)joiners stay: Persian,
  Indic scripts and emoji sequences need them;
- request text is read in Unicode NFC (:func:`nfc_tree`) before any bound or rule applies, so a
  name sent decomposed (``Cafe\u0301``) is the same name as the precomposed one (a 409, not a
  second scope that looks the same). Compatibility forms (full-width ``\uff43afe``) are kept as
  sent: NFKC would change what people wrote (``²`` to ``2``);
- the answer is one 422 problem (``invalid-request``) whose ``errors`` name the field and where it
  was (``path``, ``query``, ``body``), on SQLite and PostgreSQL alike, before any query runs.

Bodies: :class:`api.schemas.RequestModel` checks every string of every request model (nested
lists, dicts and their keys included) with :func:`text_problem`. Path and query:
:class:`InputBoundary`, a pure ASGI middleware, checks them before routing. Lengths are bounded
by each schema (``max_length``) and bodies by :data:`MAX_BODY_BYTES`.
"""

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response

# The largest request body the API reads: the largest legitimate one (a scope of 512 networks, a
# schedule with its windows) is a few tens of KiB.
MAX_BODY_BYTES = 1024 * 1024
# The deepest JSON a body field may hold (an alert channel's config is two levels deep).
MAX_DEPTH = 32

_ALLOWED_CONTROLS = frozenset("\t\n\r")
_BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e"  # LRE, RLE, PDF, LRO, RLO
    "\u2066\u2067\u2068\u2069"  # LRI, RLI, FSI, PDI
    "\u200e\u200f\u061c"  # LRM, RLM, ALM
)

# Default-ignorable characters with no job in the names and texts of an inventory: they render
# as nothing, so two strings that differ only by them look equal (and a name of U+3164 looks
# blank). ZWNJ/ZWJ (U+200C/U+200D) and the variation selectors are left out: scripts and emoji
# need them.
_INVISIBLE = frozenset(
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u200b\u2060\u2061\u2062\u2063\u2064"
    "\u3164\ufeff\uffa0"
)


# Every character text_problem refuses, as one class: every string of every request is searched
# by the regex engine, not walked a character at a time in Python.
_REFUSED_CONTROLS = "".join(
    chr(code) for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) not in _ALLOWED_CONTROLS
)
_REFUSED: Final = re.compile(
    f"[{re.escape(_REFUSED_CONTROLS + ''.join(sorted(_BIDI_CONTROLS | _INVISIBLE)))}"
    "\\ud800-\\udfff]"
)


def text_problem(value: str) -> str | None:
    """Why ``value`` may not enter the store (the first offending character), else None."""
    found = _REFUSED.search(value)
    if found is None:
        return None
    char, index = found.group(), found.start()
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        what = "NUL" if code == 0 else "a control character"
        return f"{what} (U+{code:04X}) at position {index} is not allowed in text"
    if char in _BIDI_CONTROLS:
        name = unicodedata.name(char, "bidirectional control")
        return f"a bidirectional control ({name}, U+{code:04X}) at position {index} is not allowed"
    if char in _INVISIBLE:
        name = unicodedata.name(char, "invisible character")
        return f"an invisible character ({name}, U+{code:04X}) at position {index} is not allowed"
    return f"a lone surrogate (U+{code:04X}) at position {index} is not text"


def nfc_tree(value: Any) -> Any:
    """``value`` with every string, and every string of a list, in Unicode NFC; anything else
    (numbers, dicts) as it came. Dicts are left alone: they carry other systems' settings (an
    alert channel's MQTT password), which must reach those systems byte for byte."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [unicodedata.normalize("NFC", v) if isinstance(v, str) else v for v in value]
    return value


def check_tree(value: Any) -> None:
    """Raise ``ValueError`` for the first string in ``value`` (strings, lists, tuples, dicts
    with their keys) that :func:`text_problem` refuses, or for nesting deeper than
    :data:`MAX_DEPTH`. Iterative: a hostile document cannot exhaust the interpreter's stack."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                raise ValueError(problem)
            continue
        if isinstance(item, Mapping | list | tuple | set | frozenset) and depth >= MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, Mapping):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend((v, depth + 1) for v in item)


class InputBoundary:
    """Refuses requests whose path or query carries text :func:`text_problem` refuses, and bodies
    that announce more than :data:`MAX_BODY_BYTES`, before routing (so no route, no query, no
    store ever sees them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        errors = _path_and_query_errors(scope)
        if errors:
            fields = ", ".join(sorted({e["field"] for e in errors}))
            response = problem_response(
                status=422,
                slug="invalid-request",
                title="Invalid request",
                detail=f"the request does not match the schema: {fields}",
                instance=_printable(scope.get("path", "")),
                errors=errors,
            )
            await response(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > MAX_BODY_BYTES:
            response = problem_response(
                status=413,
                slug="http-413",
                title="Request body too large",
                detail=f"the body is {length} bytes; at most {MAX_BODY_BYTES} are read",
                instance=_printable(scope.get("path", "")),
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _bounded(receive), send)


def _path_and_query_errors(scope: Scope) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    path = scope.get("path", "")
    problem = text_problem(path)
    if problem is not None:
        errors.append({"field": "path", "in": "path", "message": problem, "type": "text"})
    raw = scope.get("query_string", b"")
    try:
        query = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [
            *errors,
            {"field": "query", "in": "query", "message": "not UTF-8", "type": "text"},
        ]
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return [
            *errors,
            {
                "field": "query",
                "in": "query",
                "message": "a percent-escape is not UTF-8",
                "type": "text",
            },
        ]
    for name, value in pairs:
        problem = text_problem(name) or text_problem(value)
        if problem is not None:
            field = _printable(name) or "query"
            errors.append({"field": field, "in": "query", "message": problem, "type": "text"})
    return errors


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _printable(text: str) -> str:
    """``text`` with what :func:`text_problem` refuses escaped, fit to echo in an answer."""
    return _REFUSED.sub(lambda found: f"\\u{ord(found.group()):04x}", text)[:200]


class BodyTooLargeError(Exception):
    """A body sent without a length (chunked) grew past :data:`MAX_BODY_BYTES`: reading stops."""


def _bounded(receive: Receive) -> Receive:
    """``receive`` that stops a chunked body at :data:`MAX_BODY_BYTES` (FastAPI answers 400)."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise BodyTooLargeError(f"the body exceeds {MAX_BODY_BYTES} bytes")
        return message

    return bounded
