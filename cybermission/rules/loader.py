"""Load rule files: YAML with line numbers, validated, compiled once, examples checked at load.

A broken rule never loads half-way: every problem raises :class:`RuleError` whose message starts
with ``path:line``. The loaded :class:`Rule` objects evaluate a subject document with
:meth:`Rule.matches`; :class:`RuleSet` indexes them by protocol so each observation only meets the
rules that apply to it.
"""

import dataclasses
import functools
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydantic
import yaml

from cybermission.errors import RuleError
from cybermission.findings.models import Severity
from cybermission.rules.matcher import (
    MISSING,
    Loc,
    Predicate,
    compile_match,
    match_fields,
    resolve,
)
from cybermission.rules.schema import RuleInfo, RuleSpec

logger = logging.getLogger(__name__)

RULE_SUFFIXES = (".yaml", ".yml")

_YamlLoader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


_ATTACK_ID = re.compile(r"\b[Tt]0\d{3}\b")


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A loaded, compiled rule."""

    spec: RuleSpec
    path: Path
    predicate: Predicate = field(repr=False)
    protocols: frozenset[str]
    probes: frozenset[str]
    fields: tuple[str, ...] = ()
    # MITRE ATT&CK for ICS technique ids (T0xxx) named in references or tags, for SIEMs: read
    # once here, not for every finding the rule makes.
    attack_techniques: tuple[str, ...] = field(init=False, repr=False)
    _field_paths: tuple[tuple[str, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        info = self.spec.info
        found = _ATTACK_ID.findall(" ".join([*info.references, *info.tags]))
        object.__setattr__(
            self, "attack_techniques", tuple(dict.fromkeys(t.upper() for t in found))
        )
        object.__setattr__(self, "_field_paths", tuple(tuple(f.split(".")) for f in self.fields))

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def info(self) -> RuleInfo:
        return self.spec.info

    @property
    def severity(self) -> Severity:
        return self.spec.info.severity

    @property
    def cwe(self) -> str:
        """The CWE id of the weakness this rule detects (``info.cwe``)."""
        return self.spec.info.cwe

    def applies(self, doc: Mapping[str, object]) -> bool:
        """Whether the observation is one this rule looks at (``applies-to``)."""
        if self.protocols:
            protocol = doc.get("protocol")
            if not isinstance(protocol, str) or protocol not in self.protocols:
                return False
        return self.probe_applies(doc.get("probe"))

    def probe_applies(self, probe: object) -> bool:
        """The ``probes`` half of :meth:`applies` (the whole of it where the protocol is known
        to be one of the rule's)."""
        return not self.probes or (isinstance(probe, str) and probe in self.probes)

    def matches(self, doc: Mapping[str, object]) -> bool:
        """Whether the subject document shows the condition this rule describes."""
        return self.applies(doc) and self.predicate(doc)

    def evidence(self, doc: Mapping[str, object]) -> dict[str, object]:
        """The values of the fields this rule reads, as ``doc`` has them (the finding's proof)."""
        found: dict[str, object] = {}
        for name, path in zip(self.fields, self._field_paths, strict=True):
            value = resolve(doc, path)
            if value is not MISSING:
                found[name] = value
        return found


class RuleSet:
    """Rules indexed by protocol, so an observation is checked only against rules for it."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        by_protocol: dict[str, list[Rule]] = {}
        anywhere: list[Rule] = []
        for rule in self.rules:
            if not rule.protocols:
                anywhere.append(rule)
            for protocol in rule.protocols:
                by_protocol.setdefault(protocol, []).append(rule)
        self._anywhere = tuple(anywhere)
        self._by_protocol = {p: tuple(rs) for p, rs in by_protocol.items()}

    def __len__(self) -> int:
        return len(self.rules)

    def evaluate(self, doc: Mapping[str, object]) -> list[Rule]:
        protocol = doc.get("protocol")
        candidates = self._by_protocol.get(protocol, ()) if isinstance(protocol, str) else ()
        probe = doc.get("probe")
        hits: list[Rule] = []
        # The candidates' protocol is the document's (their index says so): only ``probes``
        # remains of Rule.applies, checked here once per rule (every observation of a scan).
        for rule in candidates:
            if rule.probe_applies(probe) and rule.predicate(doc):
                hits.append(rule)
        hits.extend(rule for rule in self._anywhere if rule.matches(doc))
        return hits


def evaluate(rules: Iterable[Rule] | RuleSet, doc: Mapping[str, object]) -> list[Rule]:
    """The rules whose condition holds for ``doc``."""
    if isinstance(rules, RuleSet):
        return rules.evaluate(doc)
    return [rule for rule in rules if rule.matches(doc)]


class RuleFileCache:
    """Compiled rules by file, reused while the file is unchanged.

    A scan run (and each capture of a pcap import) loads the rules again; parsing, validating and
    checking the examples of every file took 4.4 s of a 112-capture import. A file is reused when
    its resolved path, ``st_mtime_ns`` and ``st_size`` are those it had when it was compiled, so
    an edited, replaced or touched file is read again. (A rewrite that keeps both the size and the
    nanosecond mtime would go unseen; editors and ``git checkout`` change the mtime.)
    """

    def __init__(self) -> None:
        self._rules: dict[Path, tuple[tuple[int, int], Rule]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def get(self, path: Path) -> Rule:
        """The rule of ``path``: the cached one if the file has not changed, else compiled now."""
        try:
            resolved = path.resolve()
            status = resolved.stat()
        except OSError as exc:
            raise RuleError(str(path), None, f"cannot read rule file: {exc}") from exc
        stamp = (status.st_mtime_ns, status.st_size)
        with self._lock:
            cached = self._rules.get(resolved)
        if cached is not None and cached[0] == stamp:
            rule = cached[1]
            # The same file reached through another folder spelling reports that spelling.
            return rule if rule.path == path else dataclasses.replace(rule, path=path)
        # Stat before reading: a file changed in between is cached under its older stamp, so
        # the next call sees a different stamp and reads it again.
        rule = load_rule_file(path)
        with self._lock:
            self._rules[resolved] = (stamp, rule)
        return rule


@functools.cache
def default_rule_cache() -> RuleFileCache:
    """The process-wide cache :func:`load_rules` uses unless it is given one."""
    return RuleFileCache()


def load_rules(dirs: Sequence[Path], *, cache: RuleFileCache | None = None) -> list[Rule]:
    """Every ``*.yaml``/``*.yml`` rule under ``dirs`` (recursively), in path order.

    Unchanged files come from ``cache`` (the process-wide :func:`default_rule_cache` by
    default); the folders are listed again on every call, so added and removed files count.
    Raises :class:`RuleError` on the first broken file, or when two files share an id.
    """
    store = cache if cache is not None else default_rule_cache()
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for directory in dirs:
        if not directory.is_dir():
            raise RuleError(str(directory), None, "rules folder does not exist")
        for path in rule_paths(directory):
            rule = store.get(path)
            if rule.id in seen:
                raise RuleError(
                    str(path),
                    _first_line(path),
                    f"duplicate rule id {rule.id!r} (also in {seen[rule.id]})",
                )
            seen[rule.id] = path
            rules.append(rule)
    logger.info("rules loaded", extra={"rules": len(rules), "dirs": [str(d) for d in dirs]})
    return rules


def lint_rules(directory: Path) -> tuple[list[Rule], list[RuleError]]:
    """Parse, validate and compile every rule under ``directory``; every problem, not the first.

    Examples are not run (that is :func:`test_rules`); duplicate ids across files are reported.
    """
    rules: list[Rule] = []
    problems: list[RuleError] = []
    seen: dict[str, Rule] = {}
    for path in rule_paths(directory):
        try:
            rule = load_rule_file(path, check_examples=False)
        except RuleError as exc:
            problems.append(exc)
            continue
        first = seen.get(rule.id)
        if first is not None:
            problems.append(
                RuleError(str(path), None, f"duplicate rule id {rule.id!r} (also in {first.path})")
            )
            continue
        seen[rule.id] = rule
        rules.append(rule)
    return rules, problems


def check_rule_examples(directory: Path) -> tuple[int, list[RuleError]]:
    """Lint, then run every example of every valid rule: (examples run, problems)."""
    rules, problems = lint_rules(directory)
    examples = 0
    for rule in rules:
        examples += len(rule.spec.examples.match) + len(rule.spec.examples.no_match)
        problems.extend(example_failures(rule))
    return examples, problems


def rule_paths(directory: Path) -> list[Path]:
    """The rule files under ``directory`` (recursively), in path order."""
    return sorted(p for p in directory.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())


def load_rule_file(path: Path, *, check_examples: bool = True) -> Rule:
    """One rule file: parsed, validated, compiled, and (by default) its examples checked."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(source, None, f"cannot read rule file: {exc}") from exc
    return load_rule_text(text, path=path, check_examples=check_examples)


def load_rule_text(text: str, *, path: Path, check_examples: bool = True) -> Rule:
    """One rule from its YAML text; ``path`` names it in errors and its stem is its id (a rule
    of a published pack is stored as text, named ``<pack>@<version>/<id>.yaml``)."""
    source = str(path)
    data, lines = _parse(text, source)

    def line_of(loc: Loc) -> int | None:
        for end in range(len(loc), -1, -1):
            line = lines.get(loc[:end])
            if line is not None:
                return line
        return None

    try:
        spec = RuleSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        where = ".".join(str(part) for part in loc) or "rule"
        raise RuleError(source, line_of(loc), f"{where}: {error['msg']}") from exc
    if spec.id != path.stem:
        raise RuleError(
            source, line_of(("id",)), f"id {spec.id!r} must equal the file stem {path.stem!r}"
        )
    predicate = compile_match(spec.match, source=source, line_of=line_of)
    rule = Rule(
        spec=spec,
        path=path,
        predicate=predicate,
        protocols=frozenset(spec.applies_to.protocols),
        probes=frozenset(spec.applies_to.probes),
        fields=match_fields(spec.match),
    )
    if check_examples:
        failures = example_failures(rule)
        if failures:
            raise failures[0]
    return rule


def example_document(rule: Rule, example: Mapping[str, object]) -> dict[str, object]:
    """An example as the rule will see it: ``protocol``/``probe`` default to the first declared."""
    doc = dict(example)
    if rule.spec.applies_to.protocols:
        doc.setdefault("protocol", rule.spec.applies_to.protocols[0])
    if rule.spec.applies_to.probes:
        doc.setdefault("probe", rule.spec.applies_to.probes[0])
    return doc


def example_failures(rule: Rule) -> list[RuleError]:
    """Every example of ``rule`` that does not behave as declared, each as ``path:line`` error."""
    failed: list[tuple[Loc, str]] = []
    for index, example in enumerate(rule.spec.examples.match):
        if not rule.matches(example_document(rule, example)):
            failed.append((("examples", "match", index), f"examples.match[{index}] does not match"))
    for index, example in enumerate(rule.spec.examples.no_match):
        if rule.matches(example_document(rule, example)):
            failed.append((("examples", "no-match", index), f"examples.no-match[{index}] matches"))
    if not failed:
        return []
    source = str(rule.path)
    try:  # lines only matter for the report: parse again, once, when something failed
        _, lines = _parse(rule.path.read_text(encoding="utf-8"), source)
    except (OSError, RuleError):
        lines = {}
    return [RuleError(source, lines.get(loc), message) for loc, message in failed]


def _first_line(path: Path) -> int | None:
    try:
        _, lines = _parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, RuleError):
        return None
    return lines.get(("id",))


def _parse(text: str, source: str) -> tuple[object, dict[Loc, int]]:
    """YAML to data, plus the line of every key and list item (yaml marks are 0-based)."""
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise RuleError(source, 1, "empty rule file")
        lines: dict[Loc, int] = {(): node.start_mark.line + 1}
        _index(node, (), lines, set(), source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RuleError(source, line, f"bad YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise RuleError(source, None, f"bad YAML: {exc}") from exc
    finally:
        loader.dispose()
    return data, lines


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int], seen: set[int], source: str) -> None:
    if id(node) in seen:
        # Aliases would let a small file expand into a huge one; rules have no need for them.
        raise RuleError(
            source, node.start_mark.line + 1, "YAML anchors and aliases are not allowed"
        )
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in keys:
                raise RuleError(source, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            keys.add(key)
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _index(value_node, (*loc, key), lines, seen, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _index(item, (*loc, index), lines, seen, source)
