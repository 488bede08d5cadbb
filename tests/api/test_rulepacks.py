"""Shared rule packs over the e2e territory, on SQLite and PostgreSQL: the coordinator publishes
versions, each organisation's own admins adopt (latest or pinned) or decline, every decision is
recorded (family packs' decisions too: the same code), and a real scan evaluates exactly the pack
version its organisation chose."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api import test_territory_e2e as lab
from tests.api.test_familypacks import V1 as FAMILY_V1
from tests.api.test_territory_e2e import Org, _auth, _ok, _scan

# The end-to-end territory's fixtures: six organisations with Modbus lab devices, via the API.
orgs = lab.orgs
e2e_settings = lab.e2e_settings
world = lab.world

World = tuple[httpx.AsyncClient, FastAPI, list[Org], str]


def _rule(rule_id: str, severity: str) -> str:
    """A rule that fires on any Modbus/TCP service on port 502 (every lab device here)."""
    return f"""id: {rule_id}
info:
  name: Modbus/TCP on its standard port ({rule_id})
  severity: {severity}
  cwe: CWE-306
  description: The metropolis asks every operator to list Modbus/TCP on port 502.
  remediation: Segment it.
  tags: [modbus, territory]
applies-to:
  protocols: [modbus]
  probes: []
match:
  target.port: 502
examples:
  match:
    - target: {{address: 127.0.10.1, port: 502, transport: tcp}}
  no-match:
    - target: {{address: 127.0.10.1, port: 5020, transport: tcp}}
"""


V1 = {"name": "metro-baseline", "title": "Metropolis baseline", "rules": [_rule("metro-a", "low")]}
V2 = {**V1, "rules": [_rule("metro-a", "high"), _rule("metro-b", "medium")]}


async def _publish(client: httpx.AsyncClient, coordinator: str, body: dict[str, Any]) -> Any:
    return await _ok(
        await client.post("/api/v1/territory/rulepacks", json=body, headers=_auth(coordinator))
    )


async def _decide(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], *, secret: str | None = None
) -> httpx.Response:
    return await client.post(
        f"/api/v1/organizations/{org.id}/rulepacks/metro-baseline",
        json=body,
        headers=_auth(secret or org.admin),
    )


async def _pack_findings(client: httpx.AsyncClient, org: Org) -> dict[str, set[str]]:
    """rule id -> severities of the organisation's findings of pack rules (metro-*)."""
    body = await _ok(await client.get("/api/v1/findings?limit=500", headers=_auth(org.viewer)), 200)
    found: dict[str, set[str]] = {}
    for row in body["items"]:
        if row["rule_id"].startswith("metro-"):
            found.setdefault(row["rule_id"], set()).add(row["severity"])
    return found


async def test_rulepacks_publish_versions_and_refuse_broken_or_taken_rules(world: World) -> None:
    client, _, members, coordinator = world
    first = await _publish(client, coordinator, V1)
    assert (first["version"], first["rule_ids"]) == (1, ["metro-a"])
    second = await _publish(client, coordinator, V2)
    assert (second["version"], second["rule_ids"]) == (2, ["metro-a", "metro-b"])
    broken = {**V1, "rules": [_rule("metro-c", "low").replace("port: 5020", "port: 502")]}
    response = await client.post(
        "/api/v1/territory/rulepacks", json=broken, headers=_auth(coordinator)
    )
    assert response.status_code == 422, response.text
    assert "examples.no-match[0] matches" in response.text
    taken = {**V1, "rules": [_rule("modbus-unauthenticated-reachable", "low")]}
    response = await client.post(
        "/api/v1/territory/rulepacks", json=taken, headers=_auth(coordinator)
    )
    assert response.status_code == 422, response.text
    assert "installed rule" in response.text
    # Only the coordinator publishes: an organisation's admin may not.
    response = await client.post(
        "/api/v1/territory/rulepacks", json=V1, headers=_auth(members[0].admin)
    )
    assert response.status_code == 403, response.text
    listed = await _ok(
        await client.get("/api/v1/territory/rulepacks", headers=_auth(coordinator)), 200
    )
    assert [(p["version"], p["organizations_evaluating"]) for p in listed] == [(1, 0), (2, 0)]


# The decisions are every kind of pack's (cybermission/packs.py): rule packs and family packs.
KINDS = {"rulepacks": (V1, "evaluated"), "familypacks": (FAMILY_V1, "used")}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_packs_decisions_are_the_organisations_own_and_recorded(
    world: World, kind: str
) -> None:
    client, _, members, coordinator = world
    body, applied = KINDS[kind]
    await _ok(await client.post(f"/api/v1/territory/{kind}", json=body, headers=_auth(coordinator)))
    north, south = members[0], members[1]

    async def decide(decision: dict[str, Any], secret: str | None = None) -> int:
        response = await client.post(
            f"/api/v1/organizations/{north.id}/{kind}/{body['name']}",
            json=decision,
            headers=_auth(secret or north.admin),
        )
        return response.status_code

    # Another organisation's admin, the coordinator and a viewer may not decide for north.
    for secret in (south.admin, coordinator, north.viewer):
        assert await decide({"decision": "adopt"}, secret) in (403, 404)
    assert await decide({"decision": "adopt"}) == 201
    assert await decide({"decision": "adopt"}) == 409
    assert await decide({"decision": "adopt", "pinned_version": 7}) == 404
    assert await decide({"decision": "decline", "pinned_version": 1}) == 422
    assert await decide({"decision": "decline"}) == 201
    path = f"/api/v1/organizations/{north.id}/{kind}"
    own = await _ok(await client.get(path, headers=_auth(north.viewer)), 200)
    assert own[applied] == []
    assert [d["decision"] for d in own["decisions"]] == ["adopt", "decline"]
    # South reads neither north's decisions nor, as the coordinator does not, who adopted what.
    response = await client.get(path, headers=_auth(south.viewer))
    assert response.status_code == 404, response.text
    response = await client.get(path, headers=_auth(coordinator))
    assert response.status_code == 403, response.text
    listed = await _ok(
        await client.get(f"/api/v1/territory/{kind}", headers=_auth(coordinator)), 200
    )
    assert north.id not in str(listed)
    assert north.slug not in str(listed)


async def test_rulepacks_scans_evaluate_the_version_each_organisation_chose(world: World) -> None:
    client, _, members, coordinator = world
    following, pinned, declining, silent = members[0], members[1], members[2], members[3]
    await _publish(client, coordinator, V1)
    await _publish(client, coordinator, V2)
    assert (await _decide(client, following, {"decision": "adopt"})).status_code == 201
    response = await _decide(client, pinned, {"decision": "adopt", "pinned_version": 1})
    assert response.status_code == 201
    assert (await _decide(client, declining, {"decision": "decline"})).status_code == 201
    # Two more follow the latest: three evaluate version 2, one version 1.
    for org in members[4:6]:
        assert (await _decide(client, org, {"decision": "adopt"})).status_code == 201
    for org in (following, pinned, declining, silent):
        await _scan(client, org)

    assert await _pack_findings(client, following) == {"metro-a": {"high"}, "metro-b": {"medium"}}
    assert await _pack_findings(client, pinned) == {"metro-a": {"low"}}
    assert await _pack_findings(client, declining) == {}
    assert await _pack_findings(client, silent) == {}
    listed = await _ok(
        await client.get("/api/v1/territory/rulepacks", headers=_auth(coordinator)), 200
    )
    # One organisation on version 1 is under the threshold (3): withheld, as every aggregate.
    assert [(p["version"], p["organizations_evaluating"]) for p in listed] == [
        (1, "withheld"),
        (2, 3),
    ]
    mine = await _ok(await client.get("/api/v1/rulepacks", headers=_auth(pinned.viewer)), 200)
    assert [(p["version"], p["evaluated"]) for p in mine] == [(1, True), (2, False)]
