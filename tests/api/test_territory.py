"""The coordinator's territory over six organisations in four sectors, on SQLite and PostgreSQL:
aggregates are sums of the organisations' own views, small groups are withheld, shares are the
organisations' to give and take back, and no route hands the coordinator a device of an
organisation that did not share it."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session, select

from api.app import create_app
from cybermission.config import Settings
from cybermission.events import Event, EventKind
from tests.api.conftest import AUTH, BASE_URL
from tests.api.territory_walk import walk
from tests.api.territory_world import PLAN, TerritoryWorld, build_territory

WATER = ("water-north", "water-south", "water-east")
SINGLES = ("grid", "transit", "hospital")


@pytest.fixture
async def territory(
    api_settings: Settings, engine: Engine
) -> AsyncIterator[tuple[httpx.AsyncClient, TerritoryWorld, FastAPI]]:
    world = build_territory(engine)
    app = create_app(api_settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client, world, app


async def _own_view(client: httpx.AsyncClient, world: TerritoryWorld, slug: str) -> Any:
    response = await client.get("/api/v1/dashboard", headers=world.auth(world.members[slug].viewer))
    assert response.status_code == 200, response.text
    return response.json()


async def _exposure(client: httpx.AsyncClient, world: TerritoryWorld) -> Any:
    response = await client.get("/api/v1/territory/exposure", headers=world.auth(world.coordinator))
    assert response.status_code == 200, response.text
    return response.json()


def _severity(view: Any, severity: str) -> int:
    return next(c["count"] for c in view["findings_by_severity"] if c["label"] == severity)


async def test_territory_sector_numbers_are_sums_of_the_organisations_own_views(
    territory: tuple[httpx.AsyncClient, TerritoryWorld, FastAPI],
) -> None:
    client, world, _ = territory
    views = {slug: await _own_view(client, world, slug) for slug in PLAN}
    body = await _exposure(client, world)
    assert body["threshold"] == 3
    sectors = {s["sector"]: s for s in body["sectors"]}
    water = sectors["water"]["metrics"]
    assert water["devices"] == sum(views[s]["devices_total"] for s in WATER)
    for severity in ("critical", "high"):
        contributors = [s for s in WATER if _severity(views[s], severity)]
        expected = sum(_severity(views[s], severity) for s in WATER)
        # Three water organisations: shown when all three or none hold some, else withheld.
        if len(contributors) in (0, 3):
            assert water["open_findings"][severity] == expected
        else:
            assert water["open_findings"][severity] == "withheld"
    total = body["territory"]["metrics"]
    assert total["devices"] == sum(v["devices_total"] for v in views.values())
    assert total["open_findings"]["high"] == sum(_severity(v, "high") for v in views.values())
    # One organisation each: withheld, never zero; together three, so water stays shown.
    for sector in ("energy", "transport", "health"):
        assert sectors[sector]["organizations"] == 1
        assert sectors[sector]["metrics"]["devices"] == "withheld"
    # Nobody shares yet: no organisation's own row carries a number.
    for row in body["organizations"]:
        assert row["share"] == "none"
        assert row["metrics"]["devices"] == "withheld"


async def test_territory_trends_end_with_the_numbers_of_now(
    territory: tuple[httpx.AsyncClient, TerritoryWorld, FastAPI],
) -> None:
    client, world, _ = territory
    response = await client.get(
        "/api/v1/territory/trends?weeks=20", headers=world.auth(world.coordinator)
    )
    assert response.status_code == 200, response.text
    points = response.json()["points"]
    assert len(points) == 20
    now = (await _exposure(client, world))["territory"]["metrics"]["open_findings"]
    assert points[-1]["territory"] == now
    # Before the first transition (T0 + 1 day) nothing was open: shown as zero everywhere.
    assert all(v == 0 for v in points[0]["territory"].values())
    assert points[0]["sectors"]["health"]["high"] == "withheld"


async def test_territory_routes_refuse_organisations_and_readers(
    territory: tuple[httpx.AsyncClient, TerritoryWorld, FastAPI],
) -> None:
    client, world, _ = territory
    member = world.members["water-north"]
    for secret in (member.admin, member.viewer):
        response = await client.get("/api/v1/territory/exposure", headers=world.auth(secret))
        assert response.status_code == 403, response.text
    for path in ("/api/v1/assets", "/api/v1/findings", "/api/v1/dashboard", "/api/v1/events"):
        response = await client.get(path, headers=world.auth(world.coordinator))
        assert response.status_code == 403, (path, response.text)


async def test_territory_share_is_the_organisations_recorded_and_revocable(
    territory: tuple[httpx.AsyncClient, TerritoryWorld, FastAPI],
) -> None:
    client, world, _ = territory
    north = world.members["water-north"]
    path = f"/api/v1/organizations/{north.id}/shares"
    # Not a global admin's decision, nor another organisation's.
    assert (await client.post(path, json={"scope": "full"}, headers=AUTH)).status_code == 403
    other = world.auth(world.members["grid"].admin)
    assert (await client.post(path, json={"scope": "full"}, headers=other)).status_code == 404
    assert (
        await client.post(path, json={"scope": "full"}, headers=world.auth(north.viewer))
    ).status_code == 403
    created = await client.post(path, json={"scope": "full"}, headers=world.auth(north.admin))
    assert created.status_code == 201, created.text
    share = created.json()
    assert share["created_by"] == "token:water-north-admin"
    devices_path = f"/api/v1/territory/organizations/{north.id}/devices"
    coordinator = world.auth(world.coordinator)
    shown = (await client.get(devices_path, headers=coordinator)).json()
    assert sorted(d["serial"] for d in shown) == sorted(north.serials)
    assert sorted(a for d in shown for a in d["addresses"]) == sorted(north.addresses)
    row = next(r for r in (await _exposure(client, world))["organizations"] if r["id"] == north.id)
    assert row["share"] == "full"
    assert row["metrics"]["devices"] == len(north.devices)
    # Someone who shares nothing: an empty list, not an error that tells anything.
    south = world.members["water-south"]
    listed = await client.get(
        f"/api/v1/territory/organizations/{south.id}/devices", headers=coordinator
    )
    assert listed.json() == []
    revoked = await client.delete(f"{path}/{share['id']}", headers=world.auth(north.admin))
    assert revoked.status_code == 204
    assert (await client.get(devices_path, headers=coordinator)).json() == []
    trail = (await client.get(path, headers=world.auth(north.viewer))).json()
    assert trail[0]["revoked_by"] == "token:water-north-admin"
    assert trail[0]["revoked_at"] is not None


async def test_territory_class_share_shows_only_that_class(
    territory: tuple[httpx.AsyncClient, TerritoryWorld, FastAPI],
) -> None:
    client, world, _ = territory
    south = world.members["water-south"]
    created = await client.post(
        f"/api/v1/organizations/{south.id}/shares",
        json={"scope": "device-classes", "device_classes": ["bacnet"]},
        headers=world.auth(south.admin),
    )
    assert created.status_code == 201, created.text
    shown = (
        await client.get(
            f"/api/v1/territory/organizations/{south.id}/devices",
            headers=world.auth(world.coordinator),
        )
    ).json()
    assert [d["protocols"] for d in shown] == [["bacnet"]]
    assert [d["name"] for d in shown] == [south.names[1]]


async def test_territory_whole_api_walked_as_coordinator_names_no_unshared_device(
    territory: tuple[httpx.AsyncClient, TerritoryWorld, FastAPI],
) -> None:
    client, world, app = territory
    grid = world.members["grid"]
    shared = await client.post(
        f"/api/v1/organizations/{grid.id}/shares",
        json={"scope": "full"},
        headers=world.auth(grid.admin),
    )
    assert shared.status_code == 201
    hidden = [m for slug, m in world.members.items() if slug != "grid"]
    secrets = [v for m in hidden for v in (*m.devices, *m.names, *m.addresses, *m.serials)]
    # Every organisation, and one device of each: path parameters take each of them.
    ids = [m.id for m in world.members.values()] + [m.devices[0] for m in world.members.values()]
    count, leaks, successes = await walk(
        client, app, headers=world.auth(world.coordinator), ids=ids, secrets=secrets
    )
    assert leaks == []
    assert count > 500, count
    # What the coordinator could read at all: the territory routes, nothing else.
    assert {k.split(" ")[1].split("/")[3] for k in successes if k.startswith("GET /api")} == {
        "territory"
    }
    # The one organisation that shared: its devices are there to read.
    assert any(grid.devices[0] in k or k.endswith(f"{grid.id}/devices") for k in successes)


async def test_territory_coordinator_opens_a_protocol_campaign_each_organisation_told_its_own(
    territory: tuple[httpx.AsyncClient, TerritoryWorld, FastAPI], engine: Engine
) -> None:
    client, world, _ = territory
    north = world.members["water-north"]
    body = {"kind": "protocol", "subject": "bacnet", "title": "BACnet exposure"}
    refused = await client.post(
        "/api/v1/territory/campaigns", json=body, headers=world.auth(north.admin)
    )
    assert refused.status_code == 403
    opened = await client.post(
        "/api/v1/territory/campaigns", json=body, headers=world.auth(world.coordinator)
    )
    assert opened.status_code == 201, opened.text
    campaign = opened.json()
    # BACnet findings: only the hospital's (water-south's and grid's BACnet devices have none).
    assert campaign["organizations_notified"] == "withheld"
    assert campaign["now"]["findings_active"] == "withheld"
    hospital = world.members["hospital"]
    own = (await client.get("/api/v1/campaigns", headers=world.auth(hospital.viewer))).json()
    assert [(c["subject"], c["devices_active"]) for c in own] == [("bacnet", hospital.devices)]
    assert (await client.get("/api/v1/campaigns", headers=world.auth(north.viewer))).json() == []
    with Session(engine) as session:
        events = session.exec(select(Event).where(Event.kind == EventKind.CAMPAIGN_OPENED)).all()
    assert [(e.organization_id, [d["id"] for d in e.payload["devices"]]) for e in events] == [
        (hospital.id, hospital.devices)
    ]
    # Each device as the campaign notice names it: a selection of the asset document.
    assert {tuple(d) for e in events for d in e.payload["devices"]} == {
        ("id", "name", "vendor", "model", "firmware", "addresses")
    }
    # Opening it again tells nobody twice.
    again = await client.post(
        "/api/v1/territory/campaigns", json=body, headers=world.auth(world.coordinator)
    )
    assert again.json()["id"] == campaign["id"]
    with Session(engine) as session:
        assert len(session.exec(select(Event)).all()) == 1


async def test_territory_vendor_campaign_counts_every_organisation_and_withholds_singles(
    territory: tuple[httpx.AsyncClient, TerritoryWorld, FastAPI],
) -> None:
    client, world, _ = territory
    opened = await client.post(
        "/api/v1/territory/campaigns",
        json={"kind": "vendor", "subject": "ACME"},
        headers=world.auth(world.coordinator),
    )
    assert opened.status_code == 201, opened.text
    now = opened.json()["now"]
    plans = [devices for _, devices in PLAN.values()]
    assert now["findings_active"] == sum(len(s) for devices in plans for _, _, s in devices)
    assert now["devices_affected"] == sum(1 for devices in plans for _, _, s in devices if s)
    assert now["organizations_affected"] == len(PLAN)
    detail = (
        await client.get(
            f"/api/v1/territory/campaigns/{opened.json()['id']}",
            headers=world.auth(world.coordinator),
        )
    ).json()
    sectors = detail["progress"][-1]["sectors"]
    assert sectors["water"]["organizations_affected"] == 3
    assert sectors["health"]["organizations_affected"] == "withheld"
    listed = (
        await client.get("/api/v1/territory/campaigns", headers=world.auth(world.coordinator))
    ).json()
    assert [c["subject"] for c in listed] == ["ACME"]
