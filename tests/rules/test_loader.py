"""The rule loader: the corpus loads and its examples hold; broken files name path:line."""

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cybermission.errors import RuleError
from cybermission.findings.models import Severity
from cybermission.rules.loader import (
    Rule,
    RuleFileCache,
    RuleSet,
    default_rule_cache,
    evaluate,
    example_document,
    load_rule_file,
    load_rules,
)

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
RULE_FILES = sorted(RULES_DIR.rglob("*.yaml"))
# Field names the corpus reads, so odd documents reach the conditions.
FIELD_NAMES = [
    "address",
    "port",
    "transport",
    "vendor",
    "tls",
    "units",
    "title",
    "has_login_form",
    "community",
    "security_policies",
    "anonymous_allowed",
    "server_id",
    "zone",
]

GOOD = """\
id: {id}
info:
  name: Modbus reachable
  severity: {severity}
  cwe: CWE-306
  description: The device answers Modbus.
  remediation: Restrict the port.
  references: [MITRE ATT&CK for ICS T0855]
  tags: [modbus]
applies-to:
  protocols: [modbus]
match:
  facts.vendor|{modifier}: {value}
examples:
  match:
    - facts: {{vendor: Schneider Electric}}
  no-match:
    - facts: {{vendor: Siemens}}
"""


def write_rule(
    folder: Path, stem: str = "sample-rule", text: str | None = None, **fields: str
) -> Path:
    values = {"id": stem, "severity": "high", "modifier": "startswith", "value": "Schneider"}
    values.update(fields)
    path = folder / f"{stem}.yaml"
    path.write_text(text if text is not None else GOOD.format(**values), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_loader_corpus_loads_with_unique_ids() -> None:
    rules = load_rules([RULES_DIR])
    assert len(rules) == len(RULE_FILES) >= 15
    assert len({rule.id for rule in rules}) == len(rules)


@pytest.mark.parametrize("path", RULE_FILES, ids=[p.stem for p in RULE_FILES])
def test_loader_corpus_rule_examples_hold(path: Path) -> None:
    rule = load_rule_file(path)
    assert rule.id == path.stem
    assert rule.info.references, "every rule cites its references"
    assert any("ATT&CK" in ref for ref in rule.info.references)
    for example in rule.spec.examples.match:
        assert rule.matches(example_document(rule, example)), example
    for example in rule.spec.examples.no_match:
        assert not rule.matches(example_document(rule, example)), example


def test_loader_loads_a_good_rule(tmp_path: Path) -> None:
    rule = load_rule_file(write_rule(tmp_path))
    assert rule.id == "sample-rule"
    assert rule.severity is Severity.HIGH
    assert rule.matches({"protocol": "modbus", "facts": {"vendor": "Schneider Electric"}})
    # applies-to filters by protocol before the condition is looked at
    assert not rule.matches({"protocol": "s7", "facts": {"vendor": "Schneider Electric"}})


def test_loader_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    text = GOOD.format(id="sample-rule", severity="high", modifier="exists", value="true")
    text = text.replace("  tags: [modbus]", "  tags: [modbus\n  oops: ]")
    path = write_rule(tmp_path, text=text)
    with pytest.raises(RuleError, match=r"bad YAML") as info:
        load_rule_file(path)
    assert info.value.path == str(path)
    assert info.value.line == line_of(path, "oops")
    assert str(info.value).startswith(f"{path}:{info.value.line}: ")


def test_loader_unknown_modifier_names_its_line(tmp_path: Path) -> None:
    path = write_rule(tmp_path, modifier="beginswith")
    with pytest.raises(RuleError, match="unknown modifier 'beginswith'") as info:
        load_rule_file(path)
    assert str(info.value).startswith(f"{path}:{line_of(path, 'beginswith')}: ")


def test_loader_wrong_severity_names_its_line(tmp_path: Path) -> None:
    path = write_rule(tmp_path, severity="severe")
    with pytest.raises(RuleError, match=r"info\.severity") as info:
        load_rule_file(path)
    assert str(info.value).startswith(f"{path}:{line_of(path, 'severe')}: ")


def test_loader_id_must_equal_file_stem(tmp_path: Path) -> None:
    path = write_rule(tmp_path, stem="sample-rule", id="other-rule")
    with pytest.raises(RuleError, match="must equal the file stem") as info:
        load_rule_file(path)
    assert str(info.value).startswith(f"{path}:1: ")


def test_loader_id_must_be_kebab_case(tmp_path: Path) -> None:
    path = write_rule(tmp_path, stem="Sample_Rule")
    with pytest.raises(RuleError, match=r"^.*Sample_Rule.yaml:1: id: String should match pattern"):
        load_rule_file(path)


def test_loader_bad_regex_names_its_line(tmp_path: Path) -> None:
    path = write_rule(tmp_path, modifier="re", value="'(Schneider'")
    with pytest.raises(RuleError, match=r"bad regular expression .*\(RE2\)") as info:
        load_rule_file(path)
    assert str(info.value).startswith(f"{path}:{line_of(path, 'facts.vendor|re')}: ")


def test_loader_failing_match_example_is_named(tmp_path: Path) -> None:
    path = write_rule(tmp_path, value="Siemens")
    with pytest.raises(RuleError, match=r"examples\.match\[0\] does not match") as info:
        load_rule_file(path)
    assert info.value.line == line_of(path, "- facts: {vendor: Schneider Electric}")


def test_loader_failing_no_match_example_is_named(tmp_path: Path) -> None:
    path = write_rule(tmp_path, modifier="exists", value="true")
    with pytest.raises(RuleError, match=r"examples\.no-match\[0\] matches") as info:
        load_rule_file(path)
    assert info.value.line == line_of(path, "- facts: {vendor: Siemens}")


def test_loader_missing_field_names_its_parent(tmp_path: Path) -> None:
    text = GOOD.format(id="sample-rule", severity="high", modifier="exists", value="true")
    path = write_rule(tmp_path, text=text.replace("  remediation: Restrict the port.\n", ""))
    with pytest.raises(RuleError, match=r"info\.remediation: Field required") as info:
        load_rule_file(path)
    assert info.value.line == line_of(path, "info:")


def test_loader_unknown_field_is_refused(tmp_path: Path) -> None:
    text = GOOD.format(id="sample-rule", severity="high", modifier="exists", value="true")
    path = write_rule(tmp_path, text=text.replace("  tags:", "  sevrity: low\n  tags:"))
    with pytest.raises(RuleError, match=r"info\.sevrity: Extra inputs") as info:
        load_rule_file(path)
    assert info.value.line == line_of(path, "sevrity")


def test_loader_duplicate_key_is_refused(tmp_path: Path) -> None:
    text = GOOD.format(id="sample-rule", severity="high", modifier="exists", value="true")
    path = write_rule(tmp_path, text=text.replace("  tags:", "  severity: low\n  tags:"))
    with pytest.raises(RuleError, match="duplicate key 'severity'") as info:
        load_rule_file(path)
    assert info.value.line == line_of(path, "severity: low")


def test_loader_yaml_aliases_are_refused(tmp_path: Path) -> None:
    text = GOOD.format(id="sample-rule", severity="high", modifier="exists", value="true")
    text = text.replace("  tags: [modbus]", "  tags: &t [modbus]\n  references: *t")
    text = text.replace("  references: [MITRE ATT&CK for ICS T0855]\n", "")
    with pytest.raises(RuleError, match="anchors and aliases"):
        load_rule_file(write_rule(tmp_path, text=text))


def test_loader_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r":1: empty rule file"):
        load_rule_file(write_rule(tmp_path, text="# nothing\n"))


def test_loader_duplicate_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_rule(tmp_path / "a")
    second = write_rule(tmp_path / "b")
    with pytest.raises(RuleError, match="duplicate rule id 'sample-rule'") as info:
        load_rules([tmp_path])
    assert str(info.value).startswith(f"{second}:1: ")


def test_loader_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="rules folder does not exist"):
        load_rules([tmp_path / "absent"])


def test_loader_ruleset_evaluates_like_the_plain_list() -> None:
    rules = load_rules([RULES_DIR])
    ruleset = RuleSet(rules)
    doc = {
        "probe": "modbus",
        "protocol": "modbus",
        "target": {"address": "203.0.113.9", "port": 502, "transport": "tcp"},
        "facts": {"vendor": "Schneider Electric", "product_code": "BMX P34 2020"},
        "asset": {"zone": "control"},
    }
    hits = {rule.id for rule in evaluate(ruleset, doc)}
    assert hits == {rule.id for rule in evaluate(rules, doc)}
    assert hits == {
        "modbus-unauthenticated-reachable",
        "modbus-device-identity-disclosure",
        "ics-protocol-public-address",
    }
    assert evaluate(ruleset, {"protocol": "unknown"}) == []


def test_loader_rule_evidence_is_the_fields_it_read(tmp_path: Path) -> None:
    rule = load_rule_file(write_rule(tmp_path))
    doc = {"protocol": "modbus", "facts": {"vendor": "Schneider Electric", "serial": "S1"}}
    assert rule.evidence(doc) == {"facts.vendor": "Schneider Electric"}
    assert rule.evidence({"protocol": "modbus"}) == {}


def test_loader_cache_reuses_unchanged_files(tmp_path: Path) -> None:
    write_rule(tmp_path, "rule-a")
    write_rule(tmp_path, "rule-b")
    cache = RuleFileCache()
    first = load_rules([tmp_path], cache=cache)
    again = load_rules([tmp_path], cache=cache)
    assert [r.id for r in again] == ["rule-a", "rule-b"]
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert len(cache) == 2


def test_loader_cache_reloads_a_file_whose_size_changed(tmp_path: Path) -> None:
    path = write_rule(tmp_path, severity="high")
    cache = RuleFileCache()
    (before,) = load_rules([tmp_path], cache=cache)
    stamp = path.stat().st_mtime_ns
    write_rule(tmp_path, severity="critical")
    os.utime(path, ns=(stamp, stamp))  # same mtime: only the size tells
    (after,) = load_rules([tmp_path], cache=cache)
    assert (before.severity, after.severity) == (Severity.HIGH, Severity.CRITICAL)


def test_loader_cache_reloads_a_file_whose_mtime_changed(tmp_path: Path) -> None:
    path = write_rule(tmp_path, severity="high")
    cache = RuleFileCache()
    (before,) = load_rules([tmp_path], cache=cache)
    size, stamp = path.stat().st_size, path.stat().st_mtime_ns
    write_rule(tmp_path, severity="info")  # same length: only the mtime tells
    os.utime(path, ns=(stamp + 1_000, stamp + 1_000))
    (after,) = load_rules([tmp_path], cache=cache)
    assert path.stat().st_size == size
    assert (before.severity, after.severity) == (Severity.HIGH, Severity.INFO)


def test_loader_cache_sees_files_added_and_removed(tmp_path: Path) -> None:
    first = write_rule(tmp_path, "rule-a")
    cache = RuleFileCache()
    assert [r.id for r in load_rules([tmp_path], cache=cache)] == ["rule-a"]
    write_rule(tmp_path, "rule-b")
    first.unlink()
    assert [r.id for r in load_rules([tmp_path], cache=cache)] == ["rule-b"]


def test_loader_cache_never_serves_a_file_broken_since(tmp_path: Path) -> None:
    path = write_rule(tmp_path)
    cache = RuleFileCache()
    load_rules([tmp_path], cache=cache)
    path.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(RuleError, match=rf"^{path}:\d+: bad YAML"):
        load_rules([tmp_path], cache=cache)


def test_loader_cache_by_default_is_shared_by_every_call(tmp_path: Path) -> None:
    write_rule(tmp_path)
    (first,) = load_rules([tmp_path])
    (again,) = load_rules([tmp_path])
    assert first is again
    assert default_rule_cache() is default_rule_cache()


def test_loader_cache_reports_the_folder_spelling_it_was_given(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    write_rule(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    cache = RuleFileCache()
    (direct,) = load_rules([tmp_path / "real"], cache=cache)
    (linked,) = load_rules([tmp_path / "link"], cache=cache)
    assert linked.path == tmp_path / "link" / "sample-rule.yaml"
    assert linked.predicate is direct.predicate


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.sampled_from(
        ["", "public", "127.0.0.1", "198.51.100.7", "http://x/SecurityPolicy#None", "Login", "tcp"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=3)
    ),
    max_leaves=8,
)
subject_documents = st.fixed_dictionaries(
    {},
    optional={
        "probe": json_values,
        "protocol": st.sampled_from(["modbus", "http", "opcua", "snmp", "fox"]) | json_values,
        "target": json_values,
        "facts": json_values,
        "asset": json_values,
    },
)


@pytest.fixture(scope="module")
def corpus() -> list[Rule]:
    return load_rules([RULES_DIR])


@given(doc=subject_documents)
def test_loader_corpus_never_raises_on_odd_documents(
    corpus: list[Rule], doc: dict[str, object]
) -> None:
    ruleset = RuleSet(corpus)
    assert {r.id for r in ruleset.evaluate(doc)} == {r.id for r in corpus if r.matches(doc)}
    for rule in corpus:
        rule.evidence(doc)


def test_loader_requires_a_cwe(tmp_path: Path) -> None:
    # Without one, a rule's finding could not be an OCSF vulnerability (a cve or a cwe is needed).
    text = GOOD.format(id="sample-rule", severity="high", modifier="exists", value="true")
    path = write_rule(tmp_path, text=text.replace("  cwe: CWE-306\n", ""))
    with pytest.raises(RuleError, match=r"info\.cwe: Field required") as info:
        load_rule_file(path)
    assert info.value.line == line_of(path, "info:")


@pytest.mark.parametrize("cwe", ["306", "CWE306", "cwe-306", "CWE-0306", "CWE-306 "])
def test_loader_refuses_a_malformed_cwe(tmp_path: Path, cwe: str) -> None:
    text = GOOD.format(id="sample-rule", severity="high", modifier="exists", value="true")
    path = write_rule(tmp_path, text=text.replace("cwe: CWE-306", f"cwe: '{cwe}'"))
    with pytest.raises(RuleError, match=r"info\.cwe") as info:
        load_rule_file(path)
    assert info.value.line == line_of(path, "  cwe:")
