"""CVE everywhere: an advisory finding's CVE ids, CVSS, KEV flag, advisory id and confidence in
the CSV, JSON, OCSF and CycloneDX exports; the CycloneDX document checked by cyclonedx-python-lib's
JSON schema validator (CycloneDX 1.6), the OCSF events by the OCSF 1.1 requirements they rely on."""

import csv
import io
from dataclasses import dataclass

import httpx
import jsonschema
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from sqlalchemy import Engine

from cybermission.db import session_scope
from cybermission.findings.models import Confidence, Finding, FindingStatus, Severity
from tests.api.world import World, build_world

CVES = ["CVE-2024-0001", "CVE-2024-0002"]
VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


@dataclass(frozen=True, slots=True)
class Seeded:
    world: World
    finding: str


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    world = build_world(engine)
    org = world.orgs["a"]
    with session_scope(engine) as session:
        finding = Finding(
            dedup_key=f"advisory:ICSA-99-001-01|{org.device}|-",
            rule_id="advisory:ICSA-99-001-01",
            device_id=org.device,
            protocol="advisory",
            title="ICSA-99-001-01: Schneider Electric Modicon",
            severity=Severity.CRITICAL,
            confidence=Confidence.MEDIUM,
            score=8.3,
            status=FindingStatus.OPEN,
            evidence={
                "advisory_id": "ICSA-99-001-01",
                "cves": CVES,
                "cvss_score": 9.8,
                "cvss_vector": VECTOR,
                "kev": True,
                "confidence": "medium",
                "address": org.address,
            },
        )
        session.add(finding)
        session.flush()
        return Seeded(world, finding.id)


async def test_exports_csv_and_json_carry_the_cves(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    text = (await client.get("/api/v1/exports/findings.csv")).text
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["id"] == seeded.finding)
    assert row["cves"] == "CVE-2024-0001 CVE-2024-0002"
    assert row["advisory_id"] == "ICSA-99-001-01"
    assert (row["cvss_score"], row["kev"], row["confidence"]) == ("9.8", "True", "medium")
    assert row["address"] == seeded.world.orgs["a"].address  # from the evidence: no service
    rows = (await client.get("/api/v1/exports/findings.json")).json()
    found = next(r for r in rows if r["id"] == seeded.finding)
    assert found["cves"] == CVES
    assert found["kev"] is True


# What an OCSF 1.1.0 Vulnerability Finding (class 2002) requires of the attributes the export
# writes, from the schema's class, vulnerability and cve objects (schema.ocsf.io, 1.1.0).
OCSF_VULNERABILITY_FINDING = {
    "type": "object",
    "required": [
        "activity_id",
        "category_uid",
        "class_uid",
        "finding_info",
        "metadata",
        "severity_id",
        "time",
        "type_uid",
        "vulnerabilities",
    ],
    "properties": {
        "class_uid": {"const": 2002},
        "category_uid": {"const": 2},
        "metadata": {"type": "object", "required": ["product", "version"]},
        "finding_info": {"type": "object", "required": ["uid", "title"]},
        "vulnerabilities": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "anyOf": [{"required": ["cve"]}, {"required": ["cwe"]}],
                "properties": {
                    "cve": {
                        "type": "object",
                        "required": ["uid"],
                        "properties": {
                            "uid": {"type": "string", "pattern": "^CVE-\\d{4}-\\d{4,}$"},
                            "cvss": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["base_score", "version"],
                                    "properties": {
                                        "base_score": {"type": "number"},
                                        "version": {"type": "string"},
                                        "vector_string": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                    "is_exploit_available": {"type": "boolean"},
                },
            },
        },
    },
}


async def test_exports_ocsf_vulnerabilities_name_each_cve(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    events = (await client.get("/api/v1/exports/findings.ocsf.json")).json()
    event = next(e for e in events if e["finding_info"]["uid"] == seeded.finding)
    jsonschema.validate(event, OCSF_VULNERABILITY_FINDING)
    assert [v["cve"]["uid"] for v in event["vulnerabilities"]] == CVES
    cvss = event["vulnerabilities"][0]["cve"]["cvss"][0]
    assert cvss == {"base_score": 9.8, "version": "3.1", "vector_string": VECTOR}
    assert event["vulnerabilities"][0]["is_exploit_available"] is True
    assert event["unmapped"]["advisory_id"] == "ICSA-99-001-01"
    assert event["device"]["ip"] == seeded.world.orgs["a"].address


async def test_exports_cyclonedx_vulnerabilities_affect_the_device(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    response = await client.get("/api/v1/exports/inventory.cdx.json")
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(response.text)
    assert error is None, str(error)[:2000]
    bom = response.json()
    device = seeded.world.orgs["a"].device
    vulnerabilities = [v for v in bom["vulnerabilities"] if v["affects"] == [{"ref": device}]]
    assert [v["id"] for v in vulnerabilities] == CVES
    assert vulnerabilities[0]["ratings"][0] == {
        "severity": "critical",
        "score": 9.8,
        "vector": VECTOR,
        "method": "CVSSv31",
    }
    assert vulnerabilities[0]["advisories"][0]["title"] == "ICSA-99-001-01"
    assert {"name": "cybermission:kev", "value": "true"} in vulnerabilities[0]["properties"]
    refs = {c["bom-ref"] for c in bom["components"]}
    assert device in refs


async def test_exports_cyclonedx_without_advisories_is_still_valid(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    build_world(engine)
    response = await client.get("/api/v1/exports/inventory.cdx.json")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(response.text) is None
    assert response.json()["vulnerabilities"] == []
