"""Authorisation as a matrix: role x endpoint x organisation.

Each cell asserts one of: allowed (the route ran), forbidden (403: the role lacks the
permission), or not found (404: the row belongs to another organisation, whose existence a
scoped token must not learn). Callers: a global token and a token of organisation A; targets:
rows of organisation A and of organisation B.
"""

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel

from api.app import create_app
from cybermission.auth.models import ROLE_PERMISSIONS, Permission, Role
from cybermission.config import load_settings
from cybermission.db import create_db_engine
from cybermission.findings.advisories.family_packs import publish_family_pack
from cybermission.rules.packs import publish_pack
from tests.api.conftest import TOKEN, assert_problem, served
from tests.api.test_familypacks import V1 as FAMILY_PACK
from tests.api.test_rulepacks import V1 as RULE_PACK
from tests.api.world import World, build_world


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {device}, {finding}, ... are replaced by the target organisation's ids
    permission: Permission
    body: dict[str, Any] | None = None
    # Statuses that mean "the route ran" for this endpoint.
    ok: tuple[int, ...] = (200,)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


BY_ID = [
    Endpoint("GET", "/assets/{device}", Permission.READ),
    Endpoint("GET", "/assets/{device}/history", Permission.READ),
    Endpoint("GET", "/assets/{device}/findings", Permission.READ),
    Endpoint("PATCH", "/assets/{device}", Permission.TRIAGE, {"criticality": "high"}),
    Endpoint("GET", "/findings/{finding}", Permission.READ),
    Endpoint("GET", "/findings/{finding}/transitions", Permission.READ),
    Endpoint(
        "PATCH",
        "/findings/{finding}",
        Permission.TRIAGE,
        {"status": "acknowledged", "reason": "seen by the plant"},
    ),
    Endpoint("GET", "/scans/{scan}", Permission.READ),
    # The run is finished: the route ran and answers 409 (nothing to cancel).
    Endpoint("POST", "/scans/{scan}/cancel", Permission.SCAN, ok=(409,)),
    # Finished, not interrupted: the route ran and answers 409 (nothing to resume).
    Endpoint("POST", "/scans/{scan}/resume", Permission.SCAN, ok=(409,)),
    Endpoint("GET", "/scopes/{scope}", Permission.READ),
    Endpoint("PATCH", "/scopes/{scope}", Permission.MANAGE_SCOPES, {"reference": "CHG-2"}),
    Endpoint("DELETE", "/scopes/{scope}", Permission.MANAGE_SCOPES, ok=(204,)),
    Endpoint("GET", "/organizations/{organization}", Permission.READ),
    Endpoint("GET", "/sites/{site}", Permission.READ),
    Endpoint("GET", "/sites/{site}/zones", Permission.READ),
    Endpoint(
        "POST", "/sites/{site}/zones", Permission.MANAGE_ORGANIZATIONS, {"name": "dmz"}, (201,)
    ),
    Endpoint("DELETE", "/tokens/{token}", Permission.MANAGE_TOKENS, ok=(204,)),
]

WAL_FILES = ("-wal", "-shm", "-journal")
CALLERS = [("global", "b"), ("a", "a"), ("a", "b")]  # (caller organisation, target organisation)
TARGET_ORGS = ("a", "b")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    """The world built once; each cell works on its own copy of the database file."""
    path = tmp_path_factory.mktemp("world") / "world.db"
    engine = create_db_engine(f"sqlite:///{path}")
    SQLModel.metadata.create_all(engine)
    world = build_world(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path, world


@pytest.fixture(scope="module")
def cell_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each cell's copy of the world lives while the cell runs."""
    return tmp_path_factory.mktemp("cell") / "cell.db"


@pytest.fixture(scope="module")
def cell_app(cell_store: Path) -> FastAPI:
    """One application for the module's ~480 cells, as ``serve`` runs it: without an engine of
    the caller's, so each start-up (each cell enters the lifespan anew) opens the store at
    ``cell_store``, the cell's own fresh copy of the world, and each shutdown disposes of it.
    Building the routes' dependencies and validators (on an app's first requests) was most of a
    cell's time when every cell built an app of its own."""
    settings = load_settings(
        database_url=f"sqlite:///{cell_store}",
        rules_dirs=[Path("rules")],
        admin_token=SecretStr(TOKEN),
    )
    return create_app(settings)


@pytest.fixture
def world_engine(template: tuple[Path, World], cell_store: Path) -> Iterator[Engine]:
    # A new file each cell (the previous cell's, and any -wal/-shm left with it, unlinked first):
    # nothing a cell wrote can reach the next.
    for leftover in (cell_store, *(cell_store.with_name(cell_store.name + s) for s in WAL_FILES)):
        leftover.unlink(missing_ok=True)
    shutil.copy(template[0], cell_store)
    engine = create_db_engine(f"sqlite:///{cell_store}")
    yield engine
    engine.dispose()


@pytest.fixture
async def cell_client(cell_app: FastAPI, world_engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with served(cell_app) as client:
        # The app's start-up opened the cell's store, not another's.
        assert cell_app.state.engine.url == world_engine.url
        yield client


def _expected(role: Role, caller_org: str, target_org: str, endpoint: Endpoint) -> str:
    if endpoint.permission not in ROLE_PERMISSIONS[role]:
        return "forbidden"
    if caller_org != "global" and caller_org != target_org:
        return "not-found"
    return "allowed"


@pytest.mark.parametrize("endpoint", BY_ID, ids=str)
@pytest.mark.parametrize(("caller_org", "target_org"), CALLERS, ids=lambda v: str(v))
@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_isolation_matrix_by_id(
    cell_client: httpx.AsyncClient,
    template: tuple[Path, World],
    role: Role,
    caller_org: str,
    target_org: str,
    endpoint: Endpoint,
) -> None:
    world = template[1]
    rows = world.orgs[target_org]
    path = "/api/v1" + endpoint.path.format(**vars(rows))
    response = await cell_client.request(
        endpoint.method, path, json=endpoint.body, headers=world.auth(role, caller_org)
    )
    expected = _expected(role, caller_org, target_org, endpoint)
    if expected == "forbidden":
        assert_problem(response, 403, "forbidden")
    elif expected == "not-found":
        assert_problem(response, 404, "not-found")
    else:
        assert response.status_code in endpoint.ok, response.text


LISTS = [
    ("/assets", "device", lambda body: [i["id"] for i in body["items"]]),
    ("/findings", "finding", lambda body: [i["id"] for i in body["items"]]),
    ("/scans", "scan", lambda body: [i["id"] for i in body]),
    ("/scopes", "scope", lambda body: [i["id"] for i in body]),
    ("/events?after_id=0", "event", lambda body: [i["id"] for i in body]),
    ("/organizations", "organization", lambda body: [i["id"] for i in body]),
    ("/sites", "site", lambda body: [i["id"] for i in body]),
    ("/exports/findings.json", "finding", lambda body: [i["id"] for i in body]),
    ("/exports/assets.json", "device", lambda body: [i["id"] for i in body]),
    (
        "/exports/findings.ocsf.json",
        "finding",
        lambda body: [i["finding_info"]["uid"] for i in body],
    ),
]


@pytest.mark.parametrize(("path", "attr", "ids_of"), LISTS, ids=[p for p, _, _ in LISTS])
@pytest.mark.parametrize("caller_org", ["global", "a"])
@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_isolation_matrix_lists(
    cell_client: httpx.AsyncClient,
    template: tuple[Path, World],
    role: Role,
    caller_org: str,
    path: str,
    attr: str,
    ids_of: Any,
) -> None:
    world = template[1]
    response = await cell_client.get("/api/v1" + path, headers=world.auth(role, caller_org))
    if Permission.READ not in ROLE_PERMISSIONS[role]:
        # The coordinator reads no organisation's rows, global or not.
        assert_problem(response, 403, "forbidden")
        return
    assert response.status_code == 200, response.text
    seen = set(ids_of(response.json()))
    assert getattr(world.orgs["a"], attr) in seen
    assert (getattr(world.orgs["b"], attr) in seen) is (caller_org == "global")


@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_isolation_tokens_list_only_for_token_managers(
    cell_client: httpx.AsyncClient, template: tuple[Path, World], role: Role
) -> None:
    world = template[1]
    response = await cell_client.get("/api/v1/tokens", headers=world.auth(role, "a"))
    if Permission.MANAGE_TOKENS not in ROLE_PERMISSIONS[role]:
        assert_problem(response, 403, "forbidden")
        return
    ids = {t["id"] for t in response.json()}
    assert world.orgs["a"].token in ids
    assert world.orgs["b"].token not in ids
    assert "token_sha256" not in response.text


@pytest.mark.parametrize(("caller_org", "allowed"), [("global", True), ("a", False)])
async def test_isolation_only_global_admin_adds_organisations(
    cell_client: httpx.AsyncClient, template: tuple[Path, World], caller_org: str, allowed: bool
) -> None:
    world = template[1]
    response = await cell_client.post(
        "/api/v1/organizations",
        json={"slug": "org-c", "name": "C"},
        headers=world.auth(Role.ADMIN, caller_org),
    )
    if allowed:
        assert response.status_code == 201, response.text
    else:
        assert_problem(response, 403, "forbidden")


async def test_isolation_org_admin_cannot_mint_tokens_elsewhere(
    cell_client: httpx.AsyncClient, template: tuple[Path, World]
) -> None:
    world = template[1]
    response = await cell_client.post(
        "/api/v1/tokens",
        json={"name": "x", "role": "viewer", "organization_id": world.orgs["b"].organization},
        headers=world.auth(Role.ADMIN, "a"),
    )
    assert_problem(response, 403, "forbidden")


async def test_isolation_org_token_scans_only_its_scopes(
    cell_client: httpx.AsyncClient, template: tuple[Path, World]
) -> None:
    world = template[1]
    headers = world.auth(Role.OPERATOR, "a")
    refused = await cell_client.post(
        "/api/v1/scans", json={"targets": [world.orgs["b"].address], "ports": [9]}, headers=headers
    )
    assert_problem(refused, 403, "scope-refused")
    accepted = await cell_client.post(
        "/api/v1/scans", json={"targets": [world.orgs["a"].address], "ports": [9]}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    run = (await cell_client.get(accepted.headers["location"], headers=headers)).json()
    assert run["organization_id"] == world.orgs["a"].organization
    assert run["requested_by"] == "token:operator-a"


async def test_isolation_zone_of_another_organisation_names_nothing_of_it(
    cell_client: httpx.AsyncClient, template: tuple[Path, World]
) -> None:
    world = template[1]
    mine, theirs = world.orgs["a"], world.orgs["b"]
    response = await cell_client.post(
        "/api/v1/scopes",
        json={
            "name": "x",
            "cidrs": ["127.40.1.0/28"],
            "site_id": mine.site,
            "zone_id": theirs.zone,
        },
        headers=world.auth(Role.ADMIN, "a"),
    )
    detail = assert_problem(response, 404, "not-found")["detail"]
    assert detail == f"no zone with id {theirs.zone!r}"
    assert theirs.site not in detail


# Shared packs (rule packs, family packs): one published version in the world, then every route of
# the kind as each role, global or of organisation A, on A's and B's organisation routes.
PACK_BODIES: dict[str, dict[str, Any]] = {
    "rulepacks": {**RULE_PACK, "name": "metro"},
    "familypacks": {**FAMILY_PACK, "name": "metro"},
}


def _publish_pack(engine: Engine, kind: str) -> None:
    body = PACK_BODIES[kind]
    with Session(engine) as session:
        if kind == "rulepacks":
            publish_pack(
                session,
                name="metro",
                title=body["title"],
                notes="",
                rules=body["rules"],
                installed_ids=frozenset(),
                published_by="test",
            )
        else:
            publish_family_pack(
                session,
                name="metro",
                title=body["title"],
                notes="",
                document=body["document"],
                published_by="test",
            )
        session.commit()


@pytest.mark.parametrize("kind", list(PACK_BODIES))
@pytest.mark.parametrize("caller_org", ["global", "a"])
@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_isolation_matrix_shared_packs(
    cell_client: httpx.AsyncClient,
    template: tuple[Path, World],
    world_engine: Engine,
    role: Role,
    caller_org: str,
    kind: str,
) -> None:
    """Only a global coordinator (or global admin) publishes and reads uptake; everyone with
    read reads the published versions; an organisation's choice is read by its own members (and
    global readers) and taken by its own admins only, not even a global admin."""
    world = template[1]
    _publish_pack(world_engine, kind)
    headers = world.auth(role, caller_org)
    granted = ROLE_PERMISSIONS[role]
    is_global = caller_org == "global"
    published = await cell_client.post(
        f"/api/v1/territory/{kind}", json=PACK_BODIES[kind], headers=headers
    )
    coordinates = Permission.COORDINATE in granted and is_global
    assert published.status_code == (201 if coordinates else 403), published.text
    uptake = await cell_client.get(f"/api/v1/territory/{kind}", headers=headers)
    territory = Permission.TERRITORY in granted and is_global
    assert uptake.status_code == (200 if territory else 403), uptake.text
    listed = await cell_client.get(f"/api/v1/{kind}", headers=headers)
    assert listed.status_code == (200 if Permission.READ in granted else 403), listed.text
    for target in TARGET_ORGS:
        base = f"/api/v1/organizations/{world.orgs[target].organization}/{kind}"
        elsewhere = not is_global and target != caller_org
        read = await cell_client.get(base, headers=headers)
        if Permission.READ not in granted:
            assert_problem(read, 403, "forbidden")
        elif elsewhere:
            assert_problem(read, 404, "not-found")
        else:
            assert read.status_code == 200, read.text
        decided = await cell_client.post(
            f"{base}/metro", json={"decision": "adopt"}, headers=headers
        )
        if Permission.MANAGE_ORGANIZATIONS not in granted:
            assert_problem(decided, 403, "forbidden")
        elif elsewhere:
            assert_problem(decided, 404, "not-found")
        elif is_global:
            assert_problem(decided, 403, "forbidden")  # the organisation's own admins only
        else:
            assert decided.status_code == 201, decided.text
