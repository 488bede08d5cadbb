"""The OCSF export against OCSF's own schema: every event of ``findings.ocsf.json`` validates
against the Vulnerability Finding class (2002) of OCSF 1.1.0 as the ``ocsf-json-schema`` package
builds it (JSON Schema 2020-12) from the OCSF 1.1.0 schema export it ships; no hand-written
schema. Advisory findings name their CVEs, every rule's finding its rule's CWE."""

import csv
import io
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema
from sqlalchemy import Engine

from cybermission.db import session_scope
from cybermission.findings.models import Finding, FindingStatus
from cybermission.rules.loader import RuleSet, example_document, load_rules
from cybermission.scans.judging import rule_drafts
from tests.api.routes.test_exports_advisories import Seeded, seeded  # noqa: F401

OCSF_VERSION = "1.1.0"
VULNERABILITY_FINDING = 2002


@pytest.fixture(scope="module")
def vulnerability_finding() -> dict[str, Any]:
    ocsf = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))
    # The host profile: it is what puts `device` in a finding.
    name = ocsf.lookup_class_name_from_uid(VULNERABILITY_FINDING)
    schema = ocsf.get_class_schema(name, ["host"])
    assert f"/{OCSF_VERSION}/classes/vulnerability_finding" in schema["$id"]
    return schema


async def _events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = (await client.get("/api/v1/exports/findings.ocsf.json")).json()
    return events


def cwe_of(rule_id: str) -> str:
    (rule,) = [r for r in load_rules([Path("rules")]) if r.id == rule_id]
    return rule.cwe


def _errors(schema: dict[str, Any], event: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(event)]


async def test_exports_ocsf_advisory_findings_validate_against_ocsf_1_1(
    client: httpx.AsyncClient,
    seeded: Seeded,  # noqa: F811
    vulnerability_finding: dict[str, Any],
) -> None:
    event = next(e for e in await _events(client) if e["finding_info"]["uid"] == seeded.finding)
    assert event["vulnerabilities"][0]["cve"]["uid"].startswith("CVE-")
    assert _errors(vulnerability_finding, event) == []


@pytest.fixture
def judged(engine: Engine, seeded: Seeded) -> dict[str, str]:  # noqa: F811
    """One finding per rule of the shipped pack, written as the scan writes it: its draft made
    by ``rule_drafts`` from the rule's first match example. Finding id -> rule id."""
    device = seeded.world.orgs["a"].device
    found: dict[str, str] = {}
    with session_scope(engine) as session:
        for rule in load_rules([Path("rules")]):
            doc = example_document(rule, rule.spec.examples.match[0])
            subject = {
                "probe": doc.get("probe", doc["protocol"]),
                **doc,
                "target": {"address": "127.0.0.9", "port": 502, "transport": "tcp"}
                | dict(doc.get("target") or {}),
                "asset": {"zone_exposure": None, "criticality": None}
                | dict(doc.get("asset") or {}),
            }
            (draft,) = rule_drafts(RuleSet([rule]), subject, device_id=device, service_id=None)
            finding = Finding(
                dedup_key=f"{draft.rule_id}|{device}|-",
                rule_id=draft.rule_id,
                device_id=device,
                port=draft.port,
                protocol=draft.protocol,
                title=draft.title,
                severity=draft.severity,
                score=draft.score,
                score_breakdown=dict(draft.score_breakdown),
                status=FindingStatus.OPEN,
                evidence=dict(draft.evidence),
            )
            session.add(finding)
            session.flush()
            found[finding.id] = rule.id
    return found


async def test_exports_ocsf_rule_findings_validate_against_ocsf_1_1(
    client: httpx.AsyncClient,
    judged: dict[str, str],
    vulnerability_finding: dict[str, Any],
) -> None:
    # Every rule of the pack: its finding names the rule's CWE, and the event validates.
    events = {e["finding_info"]["uid"]: e for e in await _events(client)}
    assert set(judged) <= set(events)
    for finding_id, rule_id in judged.items():
        event = events[finding_id]
        (vulnerability,) = event["vulnerabilities"]
        assert vulnerability["cwe"]["uid"] == cwe_of(rule_id), rule_id
        assert vulnerability["cwe"]["caption"], rule_id
        assert _errors(vulnerability_finding, event) == [], rule_id


def test_exports_ocsf_schema_refuses_what_ocsf_1_1_refuses(
    vulnerability_finding: dict[str, Any],
) -> None:
    # The schema is strict enough to matter: a missing required member or a wrong type fails.
    validator = jsonschema.Draft202012Validator(vulnerability_finding)
    assert not validator.is_valid({"class_uid": VULNERABILITY_FINDING})
    assert not validator.is_valid({"class_uid": "2002", "activity_id": 1})


async def test_exports_csv_and_json_carry_the_rules_cwe(
    client: httpx.AsyncClient, judged: dict[str, str]
) -> None:
    text = (await client.get("/api/v1/exports/findings.csv")).text
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(text))}
    found = {r["id"]: r for r in (await client.get("/api/v1/exports/findings.json")).json()}
    for finding_id, rule_id in judged.items():
        assert rows[finding_id]["cwe"] == found[finding_id]["cwe"] == cwe_of(rule_id)
