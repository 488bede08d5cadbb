"""Devices named only in an advisory's words: its title, notes and remediations.

Product trees miss devices that the text names ("ControlLogix 5580 v32 or later: put the
controller's mode switch to Run", "C300 could experience a denial-of-service condition", a title
"Schweitzer Engineering Laboratories SEL-411L"). Such a sentence is weaker evidence than the tree:
a match from it is **low** confidence, carries the sentence, and is made only for an advisory whose
tree names nothing of the device (a device the tree lists as fixed is not brought back by a note).

Versions written right after the name are read ("v28-v30", "v32 or later", "V2.5 and prior"); a
sentence that tells to update gives the fixed releases ("Update to V32.016, V33.015 and later"):
a device at or after the fix of its line is left out.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cybermission.findings.advisories.products import Notation, align, is_model
from cybermission.findings.advisories.versions import (
    Version,
    VersionOutcome,
    compare_versions,
    parse_version,
    parse_version_spec,
)

MAX_PASSAGES: Final = 200
MAX_PASSAGE_CHARS: Final = 400
# Notes that say nothing of products: disclaimers, sectors, countries, headquarters.
_SKIPPED_NOTE_CATEGORIES: Final = frozenset({"legal_disclaimer", "other"})
_SPLIT_RE: Final = re.compile(r"(?<=[.!?])\s+(?=[A-Z])|\n+")
_MODEL_TOKEN_RE: Final = re.compile(r"[A-Za-z][A-Za-z-]*\d|\d[-\d]*[A-Za-z]")
_FIX_RE: Final = re.compile(r"(?i)\b(update|upgrade|fixed|fix|patch|install|resolved|addressed)")
_VERSION_TOKEN_RE: Final = re.compile(
    r"(?i)(?:(?<![0-9a-z])v\.?\s?|\bversions?\s+)(\d+(?:\.\d+)+|\d+)"
)
_OR_LATER_RE: Final = re.compile(r"(?i)\bor\s+(later|newer|higher|above)\b")


def passages(texts: Iterable[str]) -> list[str]:
    """The sentences of ``texts`` that carry a model-like word, each at most 400 characters."""
    found: list[str] = []
    for text in texts:
        for sentence in _SPLIT_RE.split(text):
            sentence = " ".join(sentence.split())[:MAX_PASSAGE_CHARS]
            if sentence and _MODEL_TOKEN_RE.search(sentence) and sentence not in found:
                found.append(sentence)
                if len(found) >= MAX_PASSAGES:
                    return found
    return found


def document_texts(document: Mapping[str, Any]) -> list[str]:
    """Title, notes and remediation details of a CSAF document, in document order."""
    meta = document.get("document")
    texts: list[str] = []
    if isinstance(meta, Mapping):
        title = meta.get("title")
        if isinstance(title, str):
            texts.append(title)
        texts.extend(_notes(meta.get("notes")))
    for vulnerability in _list(document.get("vulnerabilities")):
        if not isinstance(vulnerability, Mapping):
            continue
        texts.extend(_notes(vulnerability.get("notes")))
        for remediation in _list(vulnerability.get("remediations")):
            if isinstance(remediation, Mapping) and isinstance(remediation.get("details"), str):
                texts.append(remediation["details"])
    return texts


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else ()


def _notes(value: object) -> list[str]:
    return [
        note["text"]
        for note in _list(value)
        if isinstance(note, Mapping)
        and isinstance(note.get("text"), str)
        and note.get("category") not in _SKIPPED_NOTE_CATEGORIES
    ]


@dataclass(frozen=True, slots=True)
class Mention:
    """A device name found in a sentence, and what the words after it say of the version."""

    quote: str
    name: str
    outcome: VersionOutcome


def find_mention(
    passage: Notation,
    names: Iterable[Notation],
    version: Version | None,
    *,
    needs_version: bool = False,
) -> Mention | None:
    """The first of ``names`` spelled whole on word boundaries in ``passage``, if the versions
    the sentence gives do not leave the device out (``needs_version``: only if they put it in,
    for family names, which sentences use loosely)."""
    for name in names:
        if len(name.units) < 4 or not is_model(name.units):
            continue
        for start in sorted(passage.bounds):
            if passage.units[start : start + 1] != name.units[:1]:
                continue
            for end, stop in align(name, passage, start):
                if end == len(name.units) and stop in passage.bounds:
                    outcome = _version_after(passage.text, name.text, version)
                    if outcome is VersionOutcome.OUT or (
                        needs_version and outcome is not VersionOutcome.IN_RANGE
                    ):
                        break
                    return Mention(quote=passage.text, name=name.text, outcome=outcome)
    return None


def _version_after(sentence: str, name: str, version: Version | None) -> VersionOutcome:
    if version is None:
        return VersionOutcome.UNKNOWN
    if _FIX_RE.search(sentence):
        fixes = [v for v in (parse_version(t) for t in _VERSION_TOKEN_RE.findall(sentence)) if v]
        if not fixes:
            return VersionOutcome.UNKNOWN
        major = version.release[0] if version.release else None
        own = [f for f in fixes if f.release and f.release[0] == major]
        if own:
            below = any(compare_versions(version, f) < 0 for f in own)
            return VersionOutcome.IN_RANGE if below else VersionOutcome.OUT
        lowest = min(fixes, key=lambda f: f.release)
        return (
            VersionOutcome.IN_RANGE
            if compare_versions(version, lowest) < 0
            else (VersionOutcome.OUT)
        )
    # The words right after the name, up to the next separator: "v28-v30", "v32 or later".
    at = _find_words(sentence, name)
    if at < 0:
        return VersionOutcome.UNKNOWN
    tail = re.split(r"[,:;(]", sentence[at:], maxsplit=1)[0]
    first_version = _VERSION_TOKEN_RE.search(tail)
    if first_version is None:
        return VersionOutcome.UNKNOWN
    tail = tail[first_version.start() :]
    if _OR_LATER_RE.search(tail):
        first = parse_version(tail)
        if first is None:
            return VersionOutcome.UNKNOWN
        return (
            VersionOutcome.IN_RANGE
            if compare_versions(version, first) >= 0
            else (VersionOutcome.OUT)
        )
    spec = parse_version_spec(re.sub(r"(?i)(?<![0-9a-z])v\.?\s?", "", tail))
    outcome = spec.check(version)
    return outcome if outcome is not VersionOutcome.ALL else VersionOutcome.UNKNOWN


def _find_words(sentence: str, name: str) -> int:
    """Where the words of ``name`` end in ``sentence`` (spaces and dashes free), or -1."""
    pattern = r"[\s-]*".join(re.escape(c) for c in re.sub(r"[\s-]+", "", name))
    found = re.search(pattern, sentence, re.IGNORECASE)
    return found.end() if found else -1
