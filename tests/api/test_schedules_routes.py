"""Schedules over HTTP: create, read, change (audited), run now, remove; roles and organisations."""

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import Engine

from api.app import create_app
from cybermission.auth.models import Role
from cybermission.config import Settings
from tests.api.conftest import AUTH, assert_problem, served
from tests.api.world import World, build_world

NIGHTS = [{"days": [0, 1, 2, 3, 4], "start": "01:00", "end": "05:00"}]


@pytest.fixture
def world(engine: Engine) -> World:
    return build_world(engine)


@pytest.fixture
async def http(
    api_settings: Settings, engine: Engine, world: World
) -> AsyncIterator[httpx.AsyncClient]:
    async with served(create_app(api_settings, engine=engine)) as client:
        yield client


def _body(world: World, org: str = "a", **extra: object) -> dict[str, object]:
    return {
        "name": f"nightly-{org}",
        "scope_id": world.orgs[org].scope,
        "cron": "0 2 * * 1-5",
        "windows": NIGHTS,
        "ports": [502],
        **extra,
    }


async def test_schedules_create_read_change_audit_remove(
    http: httpx.AsyncClient, world: World
) -> None:
    created = await http.post("/api/v1/schedules", json=_body(world), headers=AUTH)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["windows"] == [
        {"days": [0, 1, 2, 3, 4], "start": "01:00:00", "end": "05:00:00"}
    ]
    assert schedule["next_due_at"] is not None
    assert schedule["organization_id"] == world.orgs["a"].organization
    url = f"/api/v1/schedules/{schedule['id']}"
    changed = await http.patch(url, json={"cron": "30 3 * * *"}, headers=AUTH)
    assert changed.status_code == 200, changed.text
    assert changed.json()["cron"] == "30 3 * * *"
    audit = (await http.get(f"{url}/audit", headers=AUTH)).json()
    assert [a["action"] for a in audit] == ["created", "updated"]
    assert audit[1]["changes"] == {"cron": ["0 2 * * 1-5", "30 3 * * *"]}
    assert (await http.delete(url, headers=AUTH)).status_code == 204
    assert_problem(await http.get(url, headers=AUTH), 404, "not-found")


async def test_schedules_bad_cron_is_invalid_input(http: httpx.AsyncClient, world: World) -> None:
    response = await http.post(
        "/api/v1/schedules", json=_body(world, cron="99 * * * *"), headers=AUTH
    )
    body = assert_problem(response, 422, "invalid-input")
    assert body["detail"].startswith("cron")


async def test_schedules_run_now_in_blackout_says_so(http: httpx.AsyncClient, world: World) -> None:
    blackout = {
        "start": "2000-01-01T00:00:00+00:00",
        "end": "2100-01-01T00:00:00+00:00",
        "reason": "plant start-up",
    }
    created = await http.post(
        "/api/v1/schedules", json=_body(world, blackouts=[blackout]), headers=AUTH
    )
    response = await http.post(f"/api/v1/schedules/{created.json()['id']}/run", headers=AUTH)
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["outcome"] == "skipped_blackout"
    assert "plant start-up" in run["reason"]
    assert run["scan_run_id"] is None
    runs = (await http.get(f"/api/v1/schedules/{created.json()['id']}/runs", headers=AUTH)).json()
    assert [r["trigger"] for r in runs] == ["manual"]


async def test_schedules_viewer_reads_but_may_not_create(
    http: httpx.AsyncClient, world: World
) -> None:
    viewer = world.auth(Role.VIEWER, "global")
    assert (await http.get("/api/v1/schedules", headers=viewer)).status_code == 200
    assert_problem(
        await http.post("/api/v1/schedules", json=_body(world), headers=viewer), 403, "forbidden"
    )


async def test_schedules_organisation_operator_sees_only_its_own(
    http: httpx.AsyncClient, world: World
) -> None:
    theirs = await http.post("/api/v1/schedules", json=_body(world, org="b"), headers=AUTH)
    operator = world.auth(Role.OPERATOR, "a")
    mine = await http.post("/api/v1/schedules", json=_body(world, org="a"), headers=operator)
    assert mine.status_code == 201, mine.text
    listed = (await http.get("/api/v1/schedules", headers=operator)).json()
    assert [s["name"] for s in listed] == ["nightly-a"]
    assert_problem(
        await http.get(f"/api/v1/schedules/{theirs.json()['id']}", headers=operator),
        404,
        "not-found",
    )
    other_scope = _body(world, org="b", name="sneaky")
    assert_problem(
        await http.post("/api/v1/schedules", json=other_scope, headers=operator), 404, "not-found"
    )
