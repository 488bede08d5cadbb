"""The rule pack speaks the probes' language: protocols they emit, facts their docstrings name."""

import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from cybermission.findings.cwe import CWE_NAMES
from cybermission.probes import load_probes
from cybermission.rules.loader import Rule, example_document, load_rules

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
# Documents the pipeline builds itself rather than a probe (rules/README.md, History and Traffic
# documents).
PIPELINE_PROTOCOLS = frozenset({"history", "traffic"})
# Facts a rule reads as "absent means not secured" before any probe reads them: the secure
# variant of the protocol is not probed yet, so the fact is never true and the rule fires on the
# cleartext service it sees. Each needs the probe to emit it, under this name, once it can.
RESERVED_FACTS: dict[str, frozenset[str]] = {
    "modbus": frozenset({"tls"}),  # Modbus/TCP Security (TLS, 802): no probe speaks it
    "enip": frozenset({"cip_security"}),  # CIP Security (EtherNet/IP over TLS, 2221)
}


@pytest.fixture(scope="module")
def corpus() -> list[Rule]:
    return load_rules([RULES_DIR])


@pytest.fixture(scope="module")
def docs_by_protocol() -> dict[str, str]:
    """Each protocol the installed probes emit, with the docstrings of the modules emitting it."""
    docs: dict[str, list[str]] = defaultdict(list)
    for probe in load_probes().values():
        module = sys.modules[type(probe).__module__]
        docs[probe.protocol].append(module.__doc__ or "")
    return {protocol: "\n".join(texts) for protocol, texts in docs.items()}


def _facts_read(rule: Rule) -> set[str]:
    return {f.split(".")[1] for f in rule.fields if f.startswith("facts.")}


def test_corpus_applies_to_protocols_the_probes_emit(
    corpus: list[Rule], docs_by_protocol: dict[str, str]
) -> None:
    known = set(docs_by_protocol) | PIPELINE_PROTOCOLS
    unknown = {
        f"{rule.path.relative_to(RULES_DIR)}: {protocol}"
        for rule in corpus
        for protocol in rule.protocols
        if protocol not in known
    }
    assert not unknown, sorted(known)


def test_corpus_reads_facts_its_probes_document(
    corpus: list[Rule], docs_by_protocol: dict[str, str]
) -> None:
    # A rule for several protocols often reads a fact only some emit (one branch of an ``any``):
    # one of them must document it. A misspelt fact ("niagara_version") is documented by none.
    undocumented: list[str] = []
    for rule in corpus:
        protocols = (rule.protocols or frozenset(docs_by_protocol)) - PIPELINE_PROTOCOLS
        if not protocols:
            continue
        for fact in sorted(_facts_read(rule)):
            if not any(
                fact in RESERVED_FACTS.get(p, ()) or _documents(docs_by_protocol.get(p, ""), fact)
                for p in protocols
            ):
                undocumented.append(f"{rule.id}: {fact} ({', '.join(sorted(protocols))})")
    assert not undocumented


def test_corpus_examples_use_facts_their_probes_document(
    corpus: list[Rule], docs_by_protocol: dict[str, str]
) -> None:
    undocumented: list[str] = []
    for rule in corpus:
        for example in [*rule.spec.examples.match, *rule.spec.examples.no_match]:
            facts = example.get("facts")
            protocol = example_document(rule, example).get("protocol")
            if not isinstance(facts, dict) or protocol in PIPELINE_PROTOCOLS:
                continue
            protocols = {protocol} if isinstance(protocol, str) else set(docs_by_protocol)
            for fact in facts:
                if not any(
                    fact in RESERVED_FACTS.get(p, ())
                    or _documents(docs_by_protocol.get(p, ""), fact)
                    for p in protocols
                ):
                    undocumented.append(f"{rule.id}: {protocol} {fact}")
    assert not undocumented


def _documents(doc: str, fact: str) -> bool:
    return re.search(rf"``{re.escape(fact)}``", doc) is not None


def test_corpus_names_a_known_cwe_for_every_rule(corpus: list[Rule]) -> None:
    # The exports write MITRE's name beside the id: every CWE the pack uses has one in the table.
    unnamed = {rule.id: rule.cwe for rule in corpus if rule.cwe not in CWE_NAMES}
    assert unnamed == {}
