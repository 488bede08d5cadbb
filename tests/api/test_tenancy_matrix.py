"""Tenancy as a matrix, on SQLite and PostgreSQL: role x caller organisation x target
organisation x endpoint, with overlapping allocations (private space both organisations reuse).

The world of ``tests/api/world.py`` plus: one shared network allocated to both organisations, each
with a scope on it under the same name, each with a device of the same serial, and tokens of
every role for B as well. Each cell says what must happen (allowed, forbidden, not found,
invalid) from the role's permissions and who owns what; cells that write work on rows of their
own (fresh names, networks, allocations), so every cell runs against the same world.
"""

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from api.app import create_app
from cybermission.auth.models import ROLE_PERMISSIONS, Permission, Role
from cybermission.auth.service import create_token
from cybermission.config import Settings
from cybermission.inventory.models import Device
from cybermission.scans.models import Scope
from cybermission.sites.allocations import create_allocation
from tests.api.conftest import served
from tests.api.world import NETWORKS, World, build_world

# Both organisations hold it (127.40.8.0/24 is in neither's own /23).
SHARED = "127.40.8.0/24"
SHARED_ADDRESS = "127.40.8.10"
SERIAL = "SN-SAME-IN-BOTH"
CALLERS = ("global", "a", "b")
TARGETS = ("a", "b")


@dataclass
class Tenancy:
    world: World
    shared_scope: dict[str, str]  # organisation -> id of its scope named "shared-net"


def _build(engine: Engine) -> Tenancy:
    world = build_world(engine)
    shared: dict[str, str] = {}
    with Session(engine, expire_on_commit=False) as session:
        for key in TARGETS:
            rows = world.orgs[key]
            create_allocation(session, organization_id=rows.organization, cidr=SHARED)
            scope = Scope(
                name="shared-net",
                cidrs=[SHARED],
                site_id=rows.site,
                organization_id=rows.organization,
            )
            session.add(scope)
            session.add(
                Device(
                    name=f"twin {key}",
                    serial=SERIAL,
                    organization_id=rows.organization,
                    site_id=rows.site,
                )
            )
            session.flush()
            shared[key] = scope.id
        for role in Role:
            issued = create_token(
                session, name=f"{role}-b", role=role, organization_id=world.orgs["b"].organization
            )
            world.tokens[(role, "b")] = issued.secret
        session.commit()
    return Tenancy(world, shared)


@dataclass(frozen=True)
class Cell:
    role: Role
    caller: str
    target: str


@dataclass(frozen=True)
class Endpoint:
    """One request per cell; ``expect`` names the outcome for a cell that may run it."""

    name: str
    permission: Permission | None  # None: global admins only
    request: Callable[[Tenancy, Cell, int], tuple[str, str, dict[str, Any] | None]]
    # Outcome when the role may and the caller sees the target: "allowed" or "invalid".
    when_permitted: Callable[[Cell], str] = lambda cell: "allowed"
    ok: tuple[int, ...] = (200,)
    # What a caller that does not see the target gets: 404 (rows by id) or 422 (a field naming
    # another organisation's site in a body is checked as a reference: still a 404 here).
    hidden: str = "not-found"


def _own(t: Tenancy, key: str) -> Any:
    return t.world.orgs[key]


def _other(key: str) -> str:
    return "b" if key == "a" else "a"


ENDPOINTS = [
    Endpoint(
        "GET /allocations/{id}",
        Permission.READ,
        lambda t, c, i: ("GET", f"/allocations/{_own(t, c.target).allocation}", None),
    ),
    Endpoint(
        "POST /allocations",
        None,
        lambda t, c, i: (
            "POST",
            "/allocations",
            {"organization_id": _own(t, c.target).organization, "cidr": f"127.42.{i}.0/24"},
        ),
        ok=(201,),
    ),
    Endpoint(
        "GET /scopes/{shared}",
        Permission.READ,
        lambda t, c, i: ("GET", f"/scopes/{t.shared_scope[c.target]}", None),
    ),
    Endpoint(
        # The shared network, on the target's site, under a fresh name: both may.
        "POST /scopes (shared network)",
        Permission.MANAGE_SCOPES,
        lambda t, c, i: (
            "POST",
            "/scopes",
            {"name": f"cell-{i}", "cidrs": [SHARED], "site_id": _own(t, c.target).site},
        ),
        ok=(201,),
    ),
    Endpoint(
        # The other organisation's own network on the target's site: nobody may, not even a
        # global admin (it is not the target's address space).
        "POST /scopes (other's network)",
        Permission.MANAGE_SCOPES,
        lambda t, c, i: (
            "POST",
            "/scopes",
            {
                "name": f"cell-{i}",
                "cidrs": [NETWORKS[_other(c.target)]],
                "site_id": _own(t, c.target).site,
            },
        ),
        when_permitted=lambda cell: "invalid",
    ),
    Endpoint(
        "PATCH /scopes/{shared} (widen to other's)",
        Permission.MANAGE_SCOPES,
        lambda t, c, i: (
            "PATCH",
            f"/scopes/{t.shared_scope[c.target]}",
            {"cidrs": [SHARED, NETWORKS[_other(c.target)]]},
        ),
        when_permitted=lambda cell: "invalid",
    ),
    Endpoint(
        "PATCH /scopes/{shared} (reference)",
        Permission.MANAGE_SCOPES,
        lambda t, c, i: ("PATCH", f"/scopes/{t.shared_scope[c.target]}", {"reference": f"C{i}"}),
    ),
    Endpoint(
        # A scan of the target's own address: only its organisation (or a global caller).
        "POST /scans (target's address)",
        Permission.SCAN,
        lambda t, c, i: ("POST", "/scans", {"targets": [_own(t, c.target).address], "ports": [9]}),
        ok=(202,),
        hidden="scope-refused",
    ),
    Endpoint(
        "GET /assets/{device}",
        Permission.READ,
        lambda t, c, i: ("GET", f"/assets/{_own(t, c.target).device}", None),
    ),
]


def _expected(endpoint: Endpoint, cell: Cell) -> str:
    if endpoint.permission is None:
        if cell.role is not Role.ADMIN or cell.caller != "global":
            return "forbidden"
    elif endpoint.permission not in ROLE_PERMISSIONS[cell.role]:
        return "forbidden"
    if cell.caller not in ("global", cell.target):
        return endpoint.hidden
    return endpoint.when_permitted(cell)


_STATUS = {"forbidden": (403,), "not-found": (404,), "invalid": (422,), "scope-refused": (403,)}


@pytest.fixture
async def tenancy_client(
    api_settings: Settings, engine: Engine
) -> AsyncIterator[tuple[httpx.AsyncClient, Tenancy]]:
    tenancy = _build(engine)
    async with served(create_app(api_settings, engine=engine)) as client:
        yield client, tenancy


async def test_tenancy_matrix(
    tenancy_client: tuple[httpx.AsyncClient, Tenancy],
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, tenancy = tenancy_client
    wrong: list[str] = []
    outcomes: Counter[str] = Counter()
    index = 0
    for endpoint in ENDPOINTS:
        for role in Role:
            for caller in CALLERS:
                for target in TARGETS:
                    index += 1
                    cell = Cell(role, caller, target)
                    method, path, body = endpoint.request(tenancy, cell, index)
                    response = await client.request(
                        method,
                        "/api/v1" + path,
                        json=body,
                        headers=tenancy.world.auth(role, caller),
                    )
                    expected = _expected(endpoint, cell)
                    outcomes[expected] += 1
                    statuses = endpoint.ok if expected == "allowed" else _STATUS[expected]
                    if response.status_code not in statuses:
                        wrong.append(
                            f"{endpoint.name} role={role} caller={caller} target={target}: "
                            f"expected {expected} {statuses}, got {response.status_code} "
                            f"{response.text[:160]}"
                        )
    with capsys.disabled():
        print(
            f"\ntenancy matrix on {engine.dialect.name}: {index} cells "
            f"({len(ENDPOINTS)} endpoints x {len(Role)} roles x {len(CALLERS)} callers x "
            f"{len(TARGETS)} target organisations): {dict(sorted(outcomes.items()))}"
        )
    assert wrong == []


async def test_tenancy_same_scope_name_in_two_organisations_reads_as_two_scopes(
    tenancy_client: tuple[httpx.AsyncClient, Tenancy],
) -> None:
    client, tenancy = tenancy_client
    for key in TARGETS:
        listed = await client.get("/api/v1/scopes", headers=tenancy.world.auth(Role.VIEWER, key))
        names = {s["name"]: s["id"] for s in listed.json()}
        assert names["shared-net"] == tenancy.shared_scope[key]
    clash = await client.post(
        "/api/v1/scopes",
        json={"name": "shared-net", "cidrs": [SHARED], "site_id": tenancy.world.orgs["a"].site},
        headers=tenancy.world.auth(Role.ADMIN, "a"),
    )
    # A's own name: a conflict that tells A only about A.
    assert clash.status_code == 409
    fresh = await client.post(
        "/api/v1/scopes",
        json={"name": "scope-b", "cidrs": [SHARED], "site_id": tenancy.world.orgs["a"].site},
        headers=tenancy.world.auth(Role.ADMIN, "a"),
    )
    # B's scope is named scope-b too: A learns nothing of it.
    assert fresh.status_code == 201, fresh.text


async def test_tenancy_scan_of_the_shared_network_is_each_organisations_own(
    tenancy_client: tuple[httpx.AsyncClient, Tenancy],
) -> None:
    """Both organisations may scan the shared network; each run is of its caller's
    organisation and judged by that organisation's scopes only."""
    client, tenancy = tenancy_client
    for key in TARGETS:
        headers = tenancy.world.auth(Role.OPERATOR, key)
        started = await client.post(
            "/api/v1/scans", json={"targets": [SHARED_ADDRESS], "ports": [9]}, headers=headers
        )
        assert started.status_code == 202, started.text
        run = (await client.get(started.headers["location"], headers=headers)).json()
        assert run["organization_id"] == tenancy.world.orgs[key].organization
        other = _own(tenancy, _other(key)).address
        refused = await client.post(
            "/api/v1/scans", json={"targets": [other], "ports": [9]}, headers=headers
        )
        assert refused.status_code == 403


async def test_tenancy_global_scan_of_the_shared_network_is_refused(
    tenancy_client: tuple[httpx.AsyncClient, Tenancy],
) -> None:
    """A global token holds both organisations' scopes over the shared network: its run could
    not tell whose devices it finds, so it is refused (an organisation's token scans it)."""
    client, tenancy = tenancy_client
    response = await client.post(
        "/api/v1/scans",
        json={"targets": [SHARED_ADDRESS], "ports": [9]},
        headers=tenancy.world.auth(Role.OPERATOR, "global"),
    )
    assert response.status_code == 403, response.text
    assert "several organisations" in response.json()["detail"]
