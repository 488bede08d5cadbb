"""The takeover of issue 11, scripted: organisation A tries to authorise and scan B's network.

Before allocations, A's admin stored a scope over B's network on A's own site, A's operator
scanned it, and B's devices and findings moved to A. Now every role of A is refused at each step
(scope, scope change, scan, allocation), on SQLite and PostgreSQL, and B's inventory is untouched.
"""

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.auth.models import ROLE_PERMISSIONS, Permission, Role
from cybermission.findings.models import Finding
from cybermission.inventory.models import Device
from cybermission.scans.models import ScanRun, Scope
from tests.api.world import NETWORKS, World
from tests.timing import scaled


def _attempts(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    """What A tries, in the order an attacker would (method, path, body)."""
    a, b = world.orgs["a"], world.orgs["b"]
    return [
        # A scope over B's network on A's site.
        ("POST", "/scopes", {"name": "grab", "cidrs": [NETWORKS["b"]], "site_id": a.site}),
        # A narrower one, in case only whole networks were compared.
        ("POST", "/scopes", {"name": "grab-2", "cidrs": [f"{b.address}/32"], "site_id": a.site}),
        # A's own scope widened to B's network, or moved onto B's site.
        ("PATCH", f"/scopes/{a.scope}", {"cidrs": [NETWORKS["a"], NETWORKS["b"]]}),
        ("PATCH", f"/scopes/{a.scope}", {"site_id": b.site}),
        # A scope with no site (a global one) from an organisation's token.
        ("POST", "/scopes", {"name": "grab-3", "cidrs": [NETWORKS["b"]]}),
        # The address space itself.
        ("POST", "/allocations", {"organization_id": a.organization, "cidr": NETWORKS["b"]}),
        # And the scan.
        ("POST", "/scans", {"targets": [b.address], "ports": [502]}),
    ]


@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_takeover_of_another_organisations_network_fails_for_every_role(
    world_client: tuple[httpx.AsyncClient, World], engine: Engine, role: Role
) -> None:
    client, world = world_client
    headers = world.auth(role, "a")
    for method, path, body in _attempts(world):
        response = await client.request(method, "/api/v1" + path, json=body, headers=headers)
        # 403 (role, scope guard or global-only), 404 (B's site is not found for A) or 422
        # (outside A's allocations): never a success.
        assert response.status_code in (403, 404, 422), (role, method, path, response.text)
        assert response.status_code < 500
    b = world.orgs["b"]
    with Session(engine) as session:
        device = session.get(Device, b.device)
        assert device is not None
        assert device.organization_id == b.organization
        # Nothing A tried was stored: no scope over B's space, no new run of A's.
        mine = Scope.organization_id == world.orgs["a"].organization
        assert [s.cidrs for s in session.exec(select(Scope).where(mine)).all()] == [[NETWORKS["a"]]]
        runs = session.exec(
            select(ScanRun).where(ScanRun.organization_id == world.orgs["a"].organization)
        ).all()
        assert [r.id for r in runs] == [world.orgs["a"].scan]
    if Permission.READ in ROLE_PERMISSIONS[role]:
        assets = await client.get("/api/v1/assets", headers=headers)
        assert b.device not in {i["id"] for i in assets.json()["items"]}


async def test_takeover_overlapping_allocation_scan_leaves_the_other_organisation_alone(
    world_client: tuple[httpx.AsyncClient, World], engine: Engine
) -> None:
    """Private ranges are reused: a global admin allocates B's network to A as well. A's scan of
    it then creates A's own devices; B's device, its finding and its organisation stay B's."""
    client, world = world_client
    a, b = world.orgs["a"], world.orgs["b"]
    listener = await asyncio.start_server(_close_at_once, b.address, 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        allocated = await client.post(
            "/api/v1/allocations",
            json={"organization_id": a.organization, "cidr": NETWORKS["b"], "reference": "reuse"},
            headers=world.auth(Role.ADMIN, "global"),
        )
        assert allocated.status_code == 201, allocated.text
        scope = await client.post(
            "/api/v1/scopes",
            json={"name": "scope-b", "cidrs": [NETWORKS["b"]], "site_id": a.site},
            headers=world.auth(Role.ADMIN, "a"),
        )
        # Same name as B's scope: names are per organisation, so no clash (and no leak).
        assert scope.status_code == 201, scope.text
        started = await client.post(
            "/api/v1/scans",
            json={"targets": [b.address], "ports": [port]},
            headers=world.auth(Role.OPERATOR, "a"),
        )
        assert started.status_code == 202, started.text
        await asyncio.wait_for(_finished(client, started.headers["location"], world), scaled(60))
    finally:
        listener.close()
        await listener.wait_closed()
    with Session(engine) as session:
        theirs = session.get(Device, b.device)
        assert theirs is not None
        assert theirs.organization_id == b.organization
        finding = session.get(Finding, b.finding)
        assert finding is not None
        assert finding.device_id == b.device
        mine = session.exec(select(Device).where(Device.organization_id == a.organization)).all()
    assert len(mine) == 2  # A's own PLC and the device A's scan found
    b_assets = await client.get(f"/api/v1/assets/{b.device}", headers=world.auth(Role.ADMIN, "a"))
    assert b_assets.status_code == 404


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _finished(client: httpx.AsyncClient, location: str, world: World) -> None:
    while True:
        run = (await client.get(location, headers=world.auth(Role.ADMIN, "global"))).json()
        if run["finished_at"] is not None:
            return
        await asyncio.sleep(0.05)
