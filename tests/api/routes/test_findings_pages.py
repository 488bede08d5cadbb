"""Findings: every sort walked page by page gives each row once, in order; filters narrow."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.findings.models import Finding, FindingStatus, Severity
from cybermission.inventory.models import Device
from cybermission.scans.placed_findings import SEVERITY_RANK, FindingSort
from tests.api.conftest import assert_problem

T0 = datetime(2026, 2, 1, tzinfo=UTC)
SEVERITIES = list(Severity)


@pytest.fixture
def stored(engine: Engine) -> list[Finding]:
    with Session(engine, expire_on_commit=False) as session:
        device = Device(name="d")
        session.add(device)
        session.flush()
        rows = [
            Finding(
                dedup_key=f"r|{device.id}|{i}",
                rule_id=f"rule-{i % 3}",
                device_id=device.id,
                protocol="modbus" if i % 2 else "s7",
                title="t",
                severity=SEVERITIES[i % 5],
                score=float(i % 4),  # ties on purpose: the id breaks them
                status=FindingStatus.OPEN if i % 3 else FindingStatus.RESOLVED,
                first_seen_at=T0 + timedelta(minutes=i // 2),
                last_seen_at=T0 + timedelta(hours=i % 5),
            )
            for i in range(23)
        ]
        session.add_all(rows)
        session.commit()
    return rows


def _key(finding: Finding, sort: FindingSort) -> tuple[object, str]:
    name = sort.value.lstrip("-")
    value = SEVERITY_RANK[finding.severity] if name == "severity" else getattr(finding, name)
    return value, finding.id


@pytest.mark.parametrize("sort", list(FindingSort), ids=str)
async def test_findings_pages_walk_every_sort(
    client: httpx.AsyncClient, stored: list[Finding], sort: FindingSort
) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        params: dict[str, str | int] = {"sort": sort.value, "limit": 4}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/api/v1/findings", params=params)).json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    expected = sorted(stored, key=lambda f: _key(f, sort), reverse=sort.value.startswith("-"))
    assert seen == [f.id for f in expected]


async def test_findings_filters_combine(client: httpx.AsyncClient, stored: list[Finding]) -> None:
    params = [
        ("severity", "high"),
        ("severity", "critical"),
        ("status", "open"),
        ("protocol", "modbus"),
    ]
    body = (await client.get("/api/v1/findings", params=params)).json()
    expected = {
        f.id
        for f in stored
        if f.severity in (Severity.HIGH, Severity.CRITICAL)
        and f.status is FindingStatus.OPEN
        and f.protocol == "modbus"
    }
    assert {item["id"] for item in body["items"]} == expected


async def test_findings_seen_ranges(client: httpx.AsyncClient, stored: list[Finding]) -> None:
    since = (T0 + timedelta(hours=3)).isoformat()
    body = (await client.get("/api/v1/findings", params={"last_seen_after": since})).json()
    assert {item["id"] for item in body["items"]} == {
        f.id for f in stored if f.last_seen_at >= T0 + timedelta(hours=3)
    }


async def test_findings_cursor_of_another_sort_is_422(
    client: httpx.AsyncClient, stored: list[Finding]
) -> None:
    body = (await client.get("/api/v1/findings", params={"limit": 2})).json()
    response = await client.get(
        "/api/v1/findings", params={"cursor": body["next_cursor"], "sort": "-score"}
    )
    assert_problem(response, 422, "invalid-input")


async def test_findings_triage_is_audited(client: httpx.AsyncClient, stored: list[Finding]) -> None:
    target = next(f for f in stored if f.status is FindingStatus.OPEN)
    response = await client.patch(
        f"/api/v1/findings/{target.id}",
        json={"status": "false-positive", "reason": "a test bench, not a PLC"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "false-positive"
    trail = (await client.get(f"/api/v1/findings/{target.id}/transitions")).json()
    assert [(t["from_status"], t["to_status"], t["actor"]) for t in trail] == [
        ("open", "false-positive", "api:admin")
    ]
