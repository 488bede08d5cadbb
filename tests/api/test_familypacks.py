"""Shared advisory family data over the e2e territory, on SQLite and PostgreSQL: the coordinator
publishes versions of a family pack (checked: a bad document is a 422 and stores nothing), each
organisation's own admins adopt one (latest or pinned) or decline it, and advisory matching of an
organisation's devices (the scans, the re-matching after an import, the sensors' ingestion and
the match API) uses the family data its organisation chose: a pinned older version that does not
hold the device in the family finds nothing where the latest one finds the advisory."""

import json
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cybermission.db import utcnow
from cybermission.findings.advisories.families import family_book
from cybermission.findings.advisories.matching import DeviceIdentity
from cybermission.findings.advisories.store import import_advisories
from cybermission.inventory.models import Device
from cybermission.scans.models import ScanRun
from cybermission.scans.recording import run_state
from cybermission.territory.campaigns import rematch_and_open
from tests.api import test_territory_e2e as lab
from tests.api.test_territory_e2e import OTHER, Org, _auth, _ok, _scan
from tests.findings.advisories.test_store import csaf

# The end-to-end territory's fixtures: six organisations with Modbus lab devices, via the API.
orgs = lab.orgs
e2e_settings = lab.e2e_settings
world = lab.world

World = tuple[httpx.AsyncClient, FastAPI, list[Org], str]

ADVISORY = "ICSA-99-020-01"
# The lab's "Acme Controls" device (OTHER) answers product code AC-100, firmware 1.0: a member of
# the Sentinel family in version 2 of the data only (version 1 holds the AC-200 alone).
SENTINEL = """families:
  - vendor: Acme Controls
    family: Acme Sentinel
    members: ['{members}']
    names: [Sentinel]
    source: the metropolis' catalogue of Acme part numbers
"""
V1 = {
    "name": "metro-families",
    "title": "Metropolis family data",
    "document": SENTINEL.format(members="^ac200"),
}
V2 = {
    **V1,
    "notes": "the AC-100 is a Sentinel too",
    "document": SENTINEL.format(members="^ac[12]00"),
}
IDENTITY = {"vendor": OTHER["vendor"], "firmware": OTHER["revision"], "names": [OTHER["model"]]}


async def _publish(client: httpx.AsyncClient, coordinator: str, body: dict[str, Any]) -> Any:
    return await _ok(
        await client.post("/api/v1/territory/familypacks", json=body, headers=_auth(coordinator))
    )


async def _decide(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], *, secret: str | None = None
) -> httpx.Response:
    return await client.post(
        f"/api/v1/organizations/{org.id}/familypacks/metro-families",
        json=body,
        headers=_auth(secret or org.admin),
    )


async def _advisory_findings(client: httpx.AsyncClient, org: Org) -> set[str]:
    """The devices (names) with an active finding of the test advisory."""
    body = await _ok(await client.get("/api/v1/findings?limit=500", headers=_auth(org.viewer)), 200)
    devices = {
        row["device_id"]
        for row in body["items"]
        if row["rule_id"] == f"advisory:{ADVISORY}" and row["status"] in ("open", "acknowledged")
    }
    names = set()
    for device_id in devices:
        asset = await _ok(
            await client.get(f"/api/v1/assets/{device_id}", headers=_auth(org.viewer)), 200
        )
        names.add(asset["model"])
    return names


def _import(engine: Engine, tmp_path: Path) -> None:
    """What `cybermission advisories import` does: import, match the inventory, open campaigns;
    an advisory of Acme Controls naming its Sentinel family as a whole, up to firmware 2.0."""
    document = csaf(ADVISORY, products=(("Sentinel series", "< 2.0"),))
    document["product_tree"]["branches"][0]["name"] = "Acme Controls"
    path = tmp_path / "acme.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with Session(engine) as session:
        now = utcnow()
        report = import_advisories(session, path, now=now)
        rematch_and_open(session, advisory_ids=report.changed, now=now)
        session.commit()


async def test_familypacks_publish_versions_and_refuse_bad_documents(world: World) -> None:
    client, _, members, coordinator = world
    first = await _publish(client, coordinator, V1)
    assert (first["version"], first["families"]) == (1, ["Acme Sentinel"])
    second = await _publish(client, coordinator, V2)
    assert (second["version"], second["document"]) == (2, V2["document"])
    bad = {
        "members: ['^ac(']": "bad member pattern",
        "colour: blue": "unknown keys ['colour']",
        "names: Sentinel": "'names' and 'vendors' must be lists",
    }
    for line, error in bad.items():
        document = SENTINEL.format(members="^ac300").replace("    names: [Sentinel]", f"    {line}")
        response = await client.post(
            "/api/v1/territory/familypacks",
            json={**V1, "document": document},
            headers=_auth(coordinator),
        )
        assert response.status_code == 422, response.text
        assert error in response.json()["detail"], response.text
        assert "metro-families@3 families[0]" in response.json()["detail"]
    twice = V1["document"] + V1["document"].removeprefix("families:\n")
    for document, error in ((twice, "appears twice"), ("- just a list", "a 'families' list")):
        response = await client.post(
            "/api/v1/territory/familypacks",
            json={**V1, "document": document},
            headers=_auth(coordinator),
        )
        assert response.status_code == 422, response.text
        assert error in response.text
    # Only the coordinator publishes: an organisation's admin may not.
    response = await client.post(
        "/api/v1/territory/familypacks", json=V1, headers=_auth(members[0].admin)
    )
    assert response.status_code == 403, response.text
    # Nothing a refused request carried was stored.
    listed = await _ok(
        await client.get("/api/v1/territory/familypacks", headers=_auth(coordinator)), 200
    )
    assert [(p["version"], p["organizations_using"]) for p in listed] == [(1, 0), (2, 0)]
    one = await _ok(
        await client.get(
            "/api/v1/familypacks/metro-families/versions/1", headers=_auth(members[0].viewer)
        ),
        200,
    )
    assert one["document"] == V1["document"]


# Deciding (who may, the record, 409 and 404) is every pack's: tests/api/test_rulepacks.py
# runs it for family packs too.


async def test_familypacks_matching_uses_the_version_each_organisation_chose(
    world: World, engine: Engine, tmp_path: Path
) -> None:
    client, app, members, coordinator = world
    north, south, east, _, transit, hospital = members
    await _publish(client, coordinator, V1)
    await _publish(client, coordinator, V2)
    # north, transit and south follow the latest; east and hospital stay on version 1.
    for org in (north, transit, south):
        assert (await _decide(client, org, {"decision": "adopt"})).status_code == 201
    for org in (east, hospital):
        response = await _decide(client, org, {"decision": "adopt", "pinned_version": 1})
        assert response.status_code == 201, response.text

    # Re-matching after an import: north's and east's devices were scanned before it.
    await _scan(client, north)
    await _scan(client, east)
    assert await _advisory_findings(client, north) == set()
    _import(engine, tmp_path)
    assert await _advisory_findings(client, north) == {OTHER["model"]}
    assert await _advisory_findings(client, east) == set()

    # A scan after the import: transit (latest) finds it, hospital (version 1) does not.
    await _scan(client, transit)
    await _scan(client, hospital)
    assert await _advisory_findings(client, transit) == {OTHER["model"]}
    assert await _advisory_findings(client, hospital) == set()

    # The sensors' central ingestion builds its state with the run's organisation's index.
    with Session(engine) as session:
        runs = {
            r.organization_id: r.id
            for r in session.exec(
                select(ScanRun).where(col(ScanRun.organization_id).in_([transit.id, hospital.id]))
            )
        }
        identity = DeviceIdentity(vendor=OTHER["vendor"], firmware="1.0", names=("AC-100",))
        for org, expected in ((transit, [ADVISORY]), (hospital, [])):
            state = run_state(session, app.state.settings, runs[org.id])
            assert state.advisories is not None
            assert state.advisories.book is not family_book()
            assert [m.advisory_id for m in state.advisories.match(identity)] == expected
        # A global run writes devices of several organisations: each matched with its own's.
        global_run = ScanRun(targets=[], ports=[502])
        session.add(global_run)
        session.flush()
        state = run_state(session, app.state.settings, global_run.id)
        for org, expected in ((transit, [ADVISORY]), (hospital, [])):
            device = session.exec(
                select(Device).where(
                    col(Device.organization_id) == org.id, col(Device.model) == OTHER["model"]
                )
            ).first()
            assert device is not None
            index = state.advisories_of(session, device)
            assert index is not None
            assert [m.advisory_id for m in index.match(identity)] == expected, org.slug
        session.rollback()

    # The match API answers each organisation with its own family data.
    for org, expected in ((north, [ADVISORY]), (east, []), (members[3], [])):
        body = await _ok(
            await client.post(
                "/api/v1/advisories/match",
                json={"devices": [IDENTITY]},
                headers=_auth(org.viewer),
            ),
            200,
        )
        assert [m["advisory_id"] for m in body[0]["matches"]] == expected, org.slug

    # East moves to the latest: its next scan finds the advisory.
    assert (await _decide(client, east, {"decision": "adopt"})).status_code == 201
    await _scan(client, east)
    assert await _advisory_findings(client, east) == {OTHER["model"]}

    listed = await _ok(
        await client.get("/api/v1/territory/familypacks", headers=_auth(coordinator)), 200
    )
    # Four organisations on version 2; one alone on version 1: withheld (privacy rule 8).
    assert [(p["version"], p["organizations_using"]) for p in listed] == [
        (1, "withheld"),
        (2, 4),
    ]
    mine = await _ok(await client.get("/api/v1/familypacks", headers=_auth(hospital.viewer)), 200)
    assert [(p["version"], p["used"]) for p in mine] == [(1, True), (2, False)]
