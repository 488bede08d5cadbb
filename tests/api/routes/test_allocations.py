"""/api/v1/allocations: global admins allocate address space; organisations read their own."""

import httpx
import pytest

from cybermission.auth.models import ROLE_PERMISSIONS, Permission, Role
from tests.api.conftest import assert_problem
from tests.api.world import ALLOCATIONS, NETWORKS, World


async def test_allocations_global_admin_allocates_and_withdraws(
    world_client: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = world_client
    admin = world.auth(Role.ADMIN, "global")
    a = world.orgs["a"]
    created = await client.post(
        "/api/v1/allocations",
        json={"organization_id": a.organization, "cidr": "127.41.0.0/16", "reference": "C-7"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["cidr"] == "127.41.0.0/16"
    assert body["created_by"] == "token:admin-global"
    again = await client.post(
        "/api/v1/allocations",
        json={"organization_id": a.organization, "cidr": "127.41.0.0/16"},
        headers=admin,
    )
    assert_problem(again, 409, "conflict")
    gone = await client.delete(f"/api/v1/allocations/{body['id']}", headers=admin)
    assert gone.status_code == 204
    assert_problem(
        await client.get(f"/api/v1/allocations/{body['id']}", headers=admin), 404, "not-found"
    )


async def test_allocations_overlap_between_organisations_is_allowed(
    world_client: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = world_client
    response = await client.post(
        "/api/v1/allocations",
        json={"organization_id": world.orgs["a"].organization, "cidr": NETWORKS["b"]},
        headers=world.auth(Role.ADMIN, "global"),
    )
    assert response.status_code == 201, response.text


async def test_allocations_organisation_admin_may_not_allocate(
    world_client: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = world_client
    response = await client.post(
        "/api/v1/allocations",
        json={"organization_id": world.orgs["a"].organization, "cidr": "127.41.0.0/16"},
        headers=world.auth(Role.ADMIN, "a"),
    )
    assert_problem(response, 403, "forbidden")
    withdraw = await client.delete(
        f"/api/v1/allocations/{world.orgs['a'].allocation}", headers=world.auth(Role.ADMIN, "a")
    )
    assert_problem(withdraw, 403, "forbidden")


@pytest.mark.parametrize(
    "role", [r for r in Role if Permission.READ in ROLE_PERMISSIONS[r]], ids=str
)
async def test_allocations_an_organisation_reads_its_own_only(
    world_client: tuple[httpx.AsyncClient, World], role: Role
) -> None:
    client, world = world_client
    response = await client.get("/api/v1/allocations", headers=world.auth(role, "a"))
    assert response.status_code == 200, response.text
    assert [a["cidr"] for a in response.json()] == [ALLOCATIONS["a"]]
    theirs = await client.get(
        f"/api/v1/allocations/{world.orgs['b'].allocation}", headers=world.auth(role, "a")
    )
    assert_problem(theirs, 404, "not-found")


async def test_allocations_needed_by_a_scope_cannot_be_withdrawn(
    world_client: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = world_client
    response = await client.delete(
        f"/api/v1/allocations/{world.orgs['a'].allocation}",
        headers=world.auth(Role.ADMIN, "global"),
    )
    assert "scope-a" in assert_problem(response, 409, "conflict")["detail"]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "64:ff9b::/96", "::ffff:0:0/96", "127.41.0.1/16"])
async def test_allocations_refuse_networks_a_scope_may_not_be(
    world_client: tuple[httpx.AsyncClient, World], cidr: str
) -> None:
    client, world = world_client
    response = await client.post(
        "/api/v1/allocations",
        json={"organization_id": world.orgs["a"].organization, "cidr": cidr},
        headers=world.auth(Role.ADMIN, "global"),
    )
    assert assert_problem(response, 422, "invalid-input")["detail"].startswith("cidr: ")
