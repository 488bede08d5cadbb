"""GET/POST /api/v1/scopes."""

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.auth.models import Role
from cybermission.config import Settings
from cybermission.scans.models import Scope
from cybermission.scans.scopes import build_guard
from tests.api.conftest import assert_problem
from tests.api.world import World


async def test_scopes_create_then_list(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/scopes",
        json={
            "name": "plant-a",
            "cidrs": ["127.40.1.0/24"],
            "excludes": ["127.40.1.9/32"],
            "reference": "contract 42",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "plant-a"
    assert body["cidrs"] == ["127.40.1.0/24"]
    assert body["excludes"] == ["127.40.1.9/32"]
    listed = await client.get("/api/v1/scopes")
    assert [s["id"] for s in listed.json()] == [body["id"]]


async def test_scopes_are_stored_in_the_spelling_that_authorises(client: httpx.AsyncClient) -> None:
    """A netmask, a hostmask (``/0.0.0.255`` reads like a /32's neighbour but is a /24 to
    Python's parser), a zero-padded prefix and upper-case IPv6 were stored as sent: what a reader
    saw was not what the guard authorised. They are stored as the networks they are."""
    created = await client.post(
        "/api/v1/scopes",
        json={
            "name": "spelled",
            "cidrs": ["127.40.1.0/255.255.255.0", "127.40.2.0/0.0.0.255", "2001:DB8:0::/032"],
            "excludes": ["127.40.1.9/255.255.255.255"],
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["cidrs"] == ["127.40.1.0/24", "127.40.2.0/24", "2001:db8::/32"]
    assert created.json()["excludes"] == ["127.40.1.9/32"]
    changed = await client.patch(
        f"/api/v1/scopes/{created.json()['id']}", json={"cidrs": ["127.40.3.0/024"]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["cidrs"] == ["127.40.3.0/24"]


async def test_scopes_duplicate_name_is_409(client: httpx.AsyncClient) -> None:
    payload = {"name": "plant-b", "cidrs": ["127.40.2.0/24"]}
    assert (await client.post("/api/v1/scopes", json=payload)).status_code == 201
    body = assert_problem(await client.post("/api/v1/scopes", json=payload), 409, "conflict")
    assert "plant-b" in str(body["detail"])
    assert len((await client.get("/api/v1/scopes")).json()) == 1


async def test_scopes_too_wide_network_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/scopes", json={"name": "all", "cidrs": ["0.0.0.0/0"]})
    body = assert_problem(response, 422, "invalid-input")
    assert str(body["detail"]).startswith("cidrs:")
    assert (await client.get("/api/v1/scopes")).json() == []


async def test_scopes_missing_cidrs_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/scopes", json={"name": "nothing"})
    body = assert_problem(response, 422, "invalid-request")
    assert body["errors"] == [
        {"field": "cidrs", "in": "body", "message": "Field required", "type": "missing"}
    ]


async def test_scopes_stored_invalid_scope_is_shown_then_fixed_or_deleted(
    world_client: tuple[httpx.AsyncClient, World], engine: Engine, settings: Settings
) -> None:
    """A scope stored before the input boundary (NAT64) is flagged by the next guard, shown with
    its reason to its organisation, and its admin can fix (PATCH) or delete it."""
    client, world = world_client
    a = world.orgs["a"]
    with Session(engine) as session:
        rows = [
            Scope(name=name, cidrs=[cidr], site_id=a.site, organization_id=a.organization)
            for name, cidr in (("old-nat64", "64:ff9b::/96"), ("old-mapped", "::ffff:0:0/96"))
        ]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
        build_guard(session, settings, organization_id=a.organization)
        session.commit()
    admin = world.auth(Role.ADMIN, "a")
    listed = {s["name"]: s for s in (await client.get("/api/v1/scopes", headers=admin)).json()}
    assert "64:ff9b::/96" in listed["old-nat64"]["invalid_reason"]
    assert "::ffff:0:0/96" in listed["old-mapped"]["invalid_reason"]
    assert listed["scope-a"]["invalid_reason"] is None
    fixed = await client.patch(
        f"/api/v1/scopes/{ids[0]}", json={"cidrs": ["127.40.1.0/25"]}, headers=admin
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["invalid_reason"] is None
    gone = await client.delete(f"/api/v1/scopes/{ids[1]}", headers=admin)
    assert gone.status_code == 204, gone.text
    names = {s["name"] for s in (await client.get("/api/v1/scopes", headers=admin)).json()}
    assert names == {"scope-a", "old-nat64"}
