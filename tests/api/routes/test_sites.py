"""/api/v1/sites: the API creates sites through the one service, with its slug, time-zone and
organisation rules (tests/sites/test_site_rules.py has the rules themselves)."""

import httpx
import pytest

from cybermission.auth.models import Role
from tests.api.conftest import assert_problem
from tests.api.world import World


async def test_sites_admin_adds_a_site_in_its_zone(
    world_client: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = world_client
    a = world.orgs["a"].organization
    created = await client.post(
        "/api/v1/sites",
        json={"organization_id": a, "slug": "depot", "name": "Depot", "timezone": "Europe/Paris"},
        headers=world.auth(Role.ADMIN, "a"),
    )
    assert created.status_code == 201, created.text
    assert (created.json()["slug"], created.json()["timezone"]) == ("depot", "Europe/Paris")


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime"])
async def test_sites_unknown_timezone_is_422_naming_the_field(
    world_client: tuple[httpx.AsyncClient, World], timezone: str
) -> None:
    client, world = world_client
    a = world.orgs["a"].organization
    response = await client.post(
        "/api/v1/sites",
        json={"organization_id": a, "slug": "depot", "name": "Depot", "timezone": timezone},
        headers=world.auth(Role.ADMIN, "a"),
    )
    body = assert_problem(response, 422, "invalid-input")
    assert "timezone" in body["detail"]


async def test_sites_other_organisation_is_not_found(
    world_client: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = world_client
    b = world.orgs["b"].organization
    response = await client.post(
        "/api/v1/sites",
        json={"organization_id": b, "slug": "depot", "name": "Depot"},
        headers=world.auth(Role.ADMIN, "a"),
    )
    assert_problem(response, 404, "not-found")


async def test_sites_slug_of_another_organisation_is_free_and_own_is_409(
    world_client: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = world_client
    a = world.orgs["a"].organization
    admin_a = world.auth(Role.ADMIN, "a")
    # "site-b" is organisation B's slug: A may use it too, and learns nothing of B.
    taken_elsewhere = await client.post(
        "/api/v1/sites",
        json={"organization_id": a, "slug": "site-b", "name": "B?"},
        headers=admin_a,
    )
    assert taken_elsewhere.status_code == 201, taken_elsewhere.text
    again = await client.post(
        "/api/v1/sites",
        json={"organization_id": a, "slug": "site-b", "name": "B?"},
        headers=admin_a,
    )
    assert_problem(again, 409, "conflict")


async def test_sites_zone_added_through_the_one_service(
    world_client: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = world_client
    url = f"/api/v1/sites/{world.orgs['a'].site}/zones"
    admin_a = world.auth(Role.ADMIN, "a")
    created = await client.post(url, json={"name": " dmz ", "exposure": "dmz"}, headers=admin_a)
    assert created.status_code == 201, created.text
    assert (created.json()["name"], created.json()["exposure"]) == ("dmz", "dmz")
    again = await client.post(url, json={"name": "dmz"}, headers=admin_a)
    # The service's own message (sites/service.create_zone), the same the CLI prints.
    body = assert_problem(again, 409, "conflict")
    assert body["detail"] == "name: the site already has a zone 'dmz'"


async def test_sites_zone_in_another_organisations_site_is_not_found(
    world_client: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = world_client
    response = await client.post(
        f"/api/v1/sites/{world.orgs['b'].site}/zones",
        json={"name": "dmz"},
        headers=world.auth(Role.ADMIN, "a"),
    )
    assert_problem(response, 404, "not-found")
