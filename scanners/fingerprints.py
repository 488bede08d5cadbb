"""Text fingerprints: what a web page or a service banner says about the device, from data.

The table is ``scanners/fingerprints.yaml``; this module checks its schema when it loads, compiles
its patterns with RE2 (linear time: device text cannot make a pattern run away, as in the rules)
and matches a service's text fields against it. A fingerprint is one of three kinds, and its kind
limits the facts it may state (the authority contract of ``scanners/README.md``):

- ``device``: the text names the device (a vendor's HMI page, a console banner): ``vendor``,
  ``product``, ``model``, ``firmware``, ``serial``, ``mac``, ``product_code``,
  ``hardware_version``;
- ``os``: the text names an embedded operating system: ``os``, ``os_vendor``;
- ``software``: the text names a server program: ``software``, ``software_vendor``.

An OS or a server product is never the device's vendor, product or firmware. Every fingerprint
states its authority, ``banner`` (text written for people), which is all a page or a banner is.

Entry format (every key checked; unknown keys are errors)::

    - id: moxa-nport-console            # kebab-case, unique
      kind: device                      # device | os | software
      authority: banner
      protocols: [telnet]               # probes whose text it reads: http, telnet, ftp, ssh, snmp
      match:                            # every field must match (AND), case-insensitive RE2
        banner: '\\bNPort [\\w-]+'
      extract:                          # optional patterns, each adding its named groups
        banner: ['Serial No\\.?\\s*:\\s*(?P<serial>\\w+)']
      facts:                            # templates: "{group}" is a named group of the patterns
        vendor: Moxa
        model: '{model}'
      examples:                         # checked by the tests: these fields give these facts
        - fields: {banner: 'Model name : NPort 5110'}
          facts: {vendor: Moxa, model: NPort 5110}

Fields: ``banner`` (telnet, ftp, ssh; for snmp the sysDescr, read by ``os`` and ``software``
entries only); ``title``, ``server``, ``body``, ``www_authenticate``,
``location``, ``powered_by`` (http). A fact whose template leaves nothing after the groups that did
not match is left out. Per kind, the first matching fingerprint of the file wins.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib.resources import files
from typing import Any

import re2
import yaml

from cybermission.errors import ValidationError
from cybermission.probes import Facts, IdentityAuthority

FINGERPRINTS_FILE = "fingerprints.yaml"
MAX_FACT_CHARS = 256
FIELDS_BY_PROTOCOL: Mapping[str, frozenset[str]] = {
    "http": frozenset({"title", "server", "body", "www_authenticate", "location", "powered_by"}),
    "telnet": frozenset({"banner"}),
    "ftp": frozenset({"banner"}),
    "ssh": frozenset({"banner"}),
    # sysDescr: only what runs on the device (os, software) is read from it here; the device's
    # own identity in it is the SNMP probe's, with management authority.
    "snmp": frozenset({"banner"}),
}
_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_ENTRY_KEYS = frozenset(
    {"id", "kind", "authority", "protocols", "match", "extract", "facts", "examples"}
)


class FingerprintKind(StrEnum):
    """What a fingerprint's text identifies."""

    DEVICE = "device"
    OS = "os"
    SOFTWARE = "software"


FACT_KEYS: Mapping[FingerprintKind, frozenset[str]] = {
    FingerprintKind.DEVICE: frozenset(
        {
            "vendor",
            "product",
            "model",
            "firmware",
            "serial",
            "mac",
            "product_code",
            "hardware_version",
        }
    ),
    FingerprintKind.OS: frozenset({"os", "os_vendor"}),
    FingerprintKind.SOFTWARE: frozenset({"software", "software_vendor"}),
}


@dataclass(frozen=True, slots=True)
class Example:
    fields: Mapping[str, str]
    facts: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """One compiled entry of the table."""

    id: str
    kind: FingerprintKind
    authority: IdentityAuthority
    protocols: frozenset[str]
    match: Mapping[str, Any]  # field -> compiled RE2 pattern
    extract: Mapping[str, tuple[Any, ...]]
    facts: Mapping[str, str]
    examples: tuple[Example, ...]

    def groups(self, fields: Mapping[str, str]) -> dict[str, str] | None:
        """The named groups the text gives, or ``None`` when a required field does not match."""
        found: dict[str, str] = {}
        for name, pattern in self.match.items():
            hit = pattern.search(fields.get(name, ""))
            if hit is None:
                return None
            found.update({k: v for k, v in hit.groupdict().items() if v})
        for name, patterns in self.extract.items():
            for pattern in patterns:
                if (hit := pattern.search(fields.get(name, ""))) is not None:
                    found.update({k: v for k, v in hit.groupdict().items() if v})
        return found

    def render(self, groups: Mapping[str, str]) -> Facts:
        facts: Facts = {}
        for key, template in self.facts.items():
            value = _PLACEHOLDER.sub(lambda m: groups.get(m.group(1), ""), template)
            value = " ".join(value.split())[:MAX_FACT_CHARS]
            if value:
                facts[key] = value
        return facts


def _fail(where: str, message: str) -> ValidationError:
    return ValidationError(f"{FINGERPRINTS_FILE}: {where}: {message}")


def _compile(pattern: object, where: str) -> Any:
    if not isinstance(pattern, str) or not pattern:
        raise _fail(where, f"expected a pattern string, got {pattern!r}")
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise _fail(where, f"bad regular expression {pattern!r} (RE2)") from exc


def _text_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(where, "expected a mapping of names to strings")
    return dict(value)


def parse_entry(raw: object, index: int) -> Fingerprint:
    """Check one entry against the format of the module docstring and compile it."""
    if not isinstance(raw, dict):
        raise _fail(f"entry {index}", "expected a mapping")
    where = f"entry {index} ({raw.get('id', '?')})"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise _fail(where, f"unknown keys {sorted(unknown)}")
    ident = raw.get("id")
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise _fail(where, "id: expected a kebab-case name")
    try:
        kind = FingerprintKind(str(raw.get("kind")))
    except ValueError as exc:
        raise _fail(where, f"kind: expected one of {[k.value for k in FingerprintKind]}") from exc
    if raw.get("authority") != IdentityAuthority.BANNER:
        raise _fail(where, "authority: a page or banner fingerprint states 'banner'")
    protocols = raw.get("protocols")
    if (
        not isinstance(protocols, list)
        or not protocols
        or not set(protocols) <= set(FIELDS_BY_PROTOCOL)
    ):
        raise _fail(where, f"protocols: expected a list of {sorted(FIELDS_BY_PROTOCOL)}")
    if kind is FingerprintKind.DEVICE and "snmp" in protocols:
        raise _fail(where, "protocols: a device fingerprint does not read SNMP's sysDescr")
    allowed_fields = frozenset().union(*(FIELDS_BY_PROTOCOL[p] for p in protocols))
    match_raw = _text_map(raw.get("match"), f"{where} match")
    if not match_raw:
        raise _fail(where, "match: at least one field")
    extract_raw = raw.get("extract", {})
    if not isinstance(extract_raw, dict):
        raise _fail(where, "extract: expected a mapping of fields to pattern lists")
    for name in (*match_raw, *extract_raw):
        if name not in allowed_fields:
            raise _fail(where, f"field {name!r} is not one of {sorted(allowed_fields)}")
    match = {name: _compile(p, f"{where} match.{name}") for name, p in match_raw.items()}
    extract: dict[str, tuple[Any, ...]] = {}
    for name, patterns in extract_raw.items():
        if not isinstance(patterns, list) or not patterns:
            raise _fail(where, f"extract.{name}: expected a list of patterns")
        extract[name] = tuple(_compile(p, f"{where} extract.{name}") for p in patterns)
    facts = _text_map(raw.get("facts"), f"{where} facts")
    if not facts or not set(facts) <= FACT_KEYS[kind]:
        raise _fail(where, f"facts: a {kind} fingerprint states only {sorted(FACT_KEYS[kind])}")
    groups = {
        g
        for p in (*match.values(), *(q for ps in extract.values() for q in ps))
        for g in p.groupindex
    }
    for key, template in facts.items():
        for placeholder in _PLACEHOLDER.findall(template):
            if placeholder not in groups:
                raise _fail(where, f"facts.{key}: no pattern has a group named {placeholder!r}")
    examples = []
    for number, example in enumerate(raw.get("examples", [])):
        if not isinstance(example, dict) or set(example) != {"fields", "facts"}:
            raise _fail(where, f"examples[{number}]: expected fields and facts")
        examples.append(
            Example(
                _text_map(example["fields"], f"{where} examples[{number}].fields"),
                _text_map(example["facts"], f"{where} examples[{number}].facts"),
            )
        )
    if not examples:
        raise _fail(where, "examples: at least one")
    return Fingerprint(
        id=ident,
        kind=kind,
        authority=IdentityAuthority.BANNER,
        protocols=frozenset(protocols),
        match=match,
        extract=extract,
        facts=facts,
        examples=tuple(examples),
    )


def parse_table(text: str) -> tuple[Fingerprint, ...]:
    """Every entry of a fingerprint table (YAML text); ids unique."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail("file", f"not YAML: {exc}") from exc
    if not isinstance(raw, list):
        raise _fail("file", "expected a list of fingerprints")
    table = tuple(parse_entry(entry, index) for index, entry in enumerate(raw))
    seen: set[str] = set()
    for fingerprint in table:
        if fingerprint.id in seen:
            raise _fail(fingerprint.id, "duplicate id")
        seen.add(fingerprint.id)
    return table


@cache
def load_fingerprints() -> tuple[Fingerprint, ...]:
    """The packaged table, parsed once per process."""
    return parse_table(files("scanners").joinpath(FINGERPRINTS_FILE).read_text("utf-8"))


def fingerprint_facts(
    protocol: str,
    fields: Mapping[str, str],
    table: Sequence[Fingerprint] | None = None,
) -> Facts:
    """Facts the text ``fields`` of a ``protocol`` service give: per kind, the first match.

    A device match also names itself in ``fingerprint`` (its id), as the HTTP probe always did.
    """
    facts: Facts = {}
    matched: set[FingerprintKind] = set()
    for fingerprint in load_fingerprints() if table is None else table:
        if fingerprint.kind in matched or protocol not in fingerprint.protocols:
            continue
        groups = fingerprint.groups(fields)
        if groups is None:
            continue
        matched.add(fingerprint.kind)
        facts.update(fingerprint.render(groups))
        if fingerprint.kind is FingerprintKind.DEVICE:
            facts["fingerprint"] = fingerprint.id
    return facts
