"""The takeover of issue 11, scripted: organisation A tries to authorise and scan B's network.

Before allocations, A's admin stored a scope over B's network on A's own site, A's operator
scanned it, and B's devices and findings moved to A. Now every role of A is refused at each step
(scope, scope change, scan, allocation), on SQLite and PostgreSQL, and B's inventory is untouched.
"""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session, select

from api.app import create_app
from cybermission.auth.models import ROLE_PERMISSIONS, Permission, Role
from cybermission.config import Settings
from cybermission.inventory.models import Device
from cybermission.scans.models import ScanRun, Scope
from tests.api.conftest import BASE_URL
from tests.api.world import NETWORKS, World, build_world


@pytest.fixture
async def world_client(
    api_settings: Settings, engine: Engine
) -> AsyncIterator[tuple[httpx.AsyncClient, World]]:
    world = build_world(engine)
    app: FastAPI = create_app(api_settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client, world
        await app.state.scan_tasks.wait()


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
