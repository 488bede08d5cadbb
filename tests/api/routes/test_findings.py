"""GET /api/v1/findings: filters by severity, rule and status, and cursor pagination."""

import httpx
import pytest
from sqlalchemy import Engine

from cybermission.db import session_scope
from cybermission.findings.models import Confidence, Finding, FindingStatus, Severity
from cybermission.inventory.models import Device
from tests.api.conftest import assert_problem

SEED = [
    ("modbus-exposed", Severity.HIGH, FindingStatus.OPEN),
    ("modbus-exposed", Severity.HIGH, FindingStatus.RESOLVED),
    ("default-credentials", Severity.CRITICAL, FindingStatus.OPEN),
    ("telnet-open", Severity.MEDIUM, FindingStatus.ACKNOWLEDGED),
]


@pytest.fixture
def seeded(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        ids = []
        for i, (rule_id, severity, status) in enumerate(SEED):
            device = Device(name=f"dev-{i}")
            session.add(device)
            session.flush()
            finding = Finding(
                dedup_key=f"{rule_id}|{device.id}|",
                rule_id=rule_id,
                device_id=device.id,
                title=rule_id,
                severity=severity,
                status=status,
            )
            session.add(finding)
            ids.append(finding.id)
        return ids


async def _ids(client: httpx.AsyncClient, **params: str | int) -> set[str]:
    response = await client.get("/api/v1/findings", params=params)
    assert response.status_code == 200, response.text
    return {f["id"] for f in response.json()["items"]}


async def test_findings_filter_by_severity(client: httpx.AsyncClient, seeded: list[str]) -> None:
    assert await _ids(client, severity="high") == {seeded[0], seeded[1]}


async def test_findings_filter_by_confidence(
    client: httpx.AsyncClient, seeded: list[str], engine: Engine
) -> None:
    with session_scope(engine) as session:
        for finding_id, level in zip(seeded, (Confidence.LOW, Confidence.HIGH), strict=False):
            finding = session.get(Finding, finding_id)
            assert finding is not None
            finding.confidence = level
    assert await _ids(client, confidence="low") == {seeded[0]}
    response = await client.get("/api/v1/findings", params={"confidence": ["low", "high"]})
    rows = response.json()["items"]
    assert {f["id"] for f in rows} == {seeded[0], seeded[1]}
    assert {f["confidence"] for f in rows} == {"low", "high"}


async def test_findings_filter_by_rule_and_status(
    client: httpx.AsyncClient, seeded: list[str]
) -> None:
    assert await _ids(client, rule_id="modbus-exposed", status="open") == {seeded[0]}


async def test_findings_unfiltered_lists_all(client: httpx.AsyncClient, seeded: list[str]) -> None:
    assert await _ids(client) == set(seeded)


async def test_findings_pages_with_cursor(client: httpx.AsyncClient, seeded: list[str]) -> None:
    first = (await client.get("/api/v1/findings", params={"limit": 3})).json()
    assert len(first["items"]) == 3
    assert first["next_cursor"] is not None
    rest = (
        await client.get("/api/v1/findings", params={"limit": 3, "cursor": first["next_cursor"]})
    ).json()
    assert rest["next_cursor"] is None
    assert {f["id"] for f in first["items"] + rest["items"]} == set(seeded)
    assert len(first["items"] + rest["items"]) == len(seeded)


async def test_findings_unknown_severity_names_the_field(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.get("/api/v1/findings", params={"severity": "apocalyptic"}),
        422,
        "invalid-request",
    )
    assert body["errors"][0]["field"] == "severity[0]"
    assert body["errors"][0]["in"] == "query"


async def test_findings_filter_by_device(
    client: httpx.AsyncClient, engine: Engine, seeded: list[str]
) -> None:
    with session_scope(engine) as session:
        device_id = session.get_one(Finding, seeded[2]).device_id
    assert await _ids(client, device_id=device_id) == {seeded[2]}


async def test_findings_bad_cursor_is_422(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.get("/api/v1/findings", params={"cursor": "garbage"}), 422, "invalid-input"
    )
    assert "cursor" in body["detail"]
