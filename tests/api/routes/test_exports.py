"""Exports: CSV and JSON of assets and findings, OCSF Vulnerability Findings, CycloneDX 1.6."""

import csv
import io

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from api.routes import exports
from cybermission.auth.models import Role
from cybermission.inventory.models import Device
from tests.api.world import World, build_world


@pytest.fixture
def world(engine: Engine) -> World:
    return build_world(engine)


async def test_exports_findings_csv_has_header_and_rows(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.get("/api/v1/exports/findings.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="findings.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == exports.FINDING_COLUMNS
    assert {r["id"] for r in rows} == {world.orgs["a"].finding, world.orgs["b"].finding}
    assert {r["address"] for r in rows} == {world.orgs["a"].address, world.orgs["b"].address}


async def test_exports_findings_follow_filters(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get(
        "/api/v1/exports/findings.json", params={"site_id": world.orgs["b"].site}
    )
    assert [f["id"] for f in response.json()] == [world.orgs["b"].finding]


async def test_exports_stream_every_page(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page of one row: the stream must stitch pages into one valid document.
    monkeypatch.setattr(exports, "PAGE", 1)
    findings = (await client.get("/api/v1/exports/findings.json")).json()
    assets = (await client.get("/api/v1/exports/assets.json")).json()
    assert len(findings) == 2
    assert len(assets) == 2
    csv_rows = list(
        csv.DictReader(io.StringIO((await client.get("/api/v1/exports/assets.csv")).text))
    )
    assert [r["addresses"] for r in csv_rows] == [world.orgs["a"].address, world.orgs["b"].address]


async def test_exports_ocsf_is_vulnerability_finding(
    client: httpx.AsyncClient, world: World
) -> None:
    events = (await client.get("/api/v1/exports/findings.ocsf.json")).json()
    event = next(e for e in events if e["finding_info"]["uid"] == world.orgs["a"].finding)
    # OCSF 1.1.0 Vulnerability Finding: class 2002 in category 2, type_uid = class * 100 + activity.
    assert event["class_uid"] == 2002
    assert event["category_uid"] == 2
    assert event["activity_id"] == 1
    assert event["type_uid"] == 200201
    assert event["severity_id"] == 4
    assert event["severity"] == "High"
    assert event["status_id"] == 1
    assert event["metadata"]["version"] == "1.1.0"
    assert event["metadata"]["product"]["name"] == "cybermission"
    assert event["finding_info"]["title"] == "Modbus reachable"
    assert isinstance(event["time"], int)
    assert event["vulnerabilities"][0]["title"] == "Modbus reachable"
    assert event["device"]["ip"] == world.orgs["a"].address
    assert event["device"]["vendor_name"] == "Acme"


async def test_exports_cyclonedx_lists_devices_with_firmware(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.get("/api/v1/exports/inventory.cdx.json")
    assert response.headers["content-type"].startswith("application/vnd.cyclonedx+json")
    bom = response.json()
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["specVersion"] == "1.6"
    assert bom["serialNumber"].startswith("urn:uuid:")
    device = next(c for c in bom["components"] if c["bom-ref"] == world.orgs["a"].device)
    assert device["type"] == "device"
    assert device["name"] == "PLC-a"
    assert device["manufacturer"] == {"name": "Acme"}
    assert device["components"] == [
        {
            "type": "firmware",
            "bom-ref": f"{world.orgs['a'].device}:firmware",
            "name": "PLC-a firmware",
            "version": "1.0",
        }
    ]
    assert {"name": "cybermission:address", "value": world.orgs["a"].address} in device[
        "properties"
    ]


async def test_exports_of_an_organisation_hold_only_its_rows(
    anonymous: httpx.AsyncClient, world: World
) -> None:
    response = await anonymous.get(
        "/api/v1/exports/inventory.cdx.json", headers=world.auth(Role.VIEWER, "a")
    )
    refs = [c["bom-ref"] for c in response.json()["components"]]
    assert refs == [world.orgs["a"].device]


async def test_exports_csv_neutralise_formulas_and_json_keeps_raw_values(
    client: httpx.AsyncClient, world: World, engine: Engine
) -> None:
    # Device-controlled strings as a hostile device would report them (issue 11).
    with Session(engine) as session:
        device = session.get(Device, world.orgs["a"].device)
        assert device is not None
        device.vendor, device.model, device.firmware, device.serial = (
            "=1+2 Vendor",
            "@SUM(1,1)",
            "+v3",
            "-42",
        )
        session.add(device)
        session.commit()
    assets = list(
        csv.DictReader(io.StringIO((await client.get("/api/v1/exports/assets.csv")).text))
    )
    row = next(r for r in assets if r["id"] == world.orgs["a"].device)
    assert (row["vendor"], row["model"], row["firmware"]) == ("'=1+2 Vendor", "'@SUM(1,1)", "'+v3")
    assert row["serial"] == "-42"  # a plain negative number stays a number
    findings = list(
        csv.DictReader(io.StringIO((await client.get("/api/v1/exports/findings.csv")).text))
    )
    finding = next(r for r in findings if r["device_id"] == world.orgs["a"].device)
    assert (finding["vendor"], finding["model"]) == ("'=1+2 Vendor", "'@SUM(1,1)")
    raw = next(
        a
        for a in (await client.get("/api/v1/exports/assets.json")).json()
        if a["id"] == world.orgs["a"].device
    )
    assert (raw["vendor"], raw["model"], raw["firmware"]) == ("=1+2 Vendor", "@SUM(1,1)", "+v3")
    raw_finding = next(
        f
        for f in (await client.get("/api/v1/exports/findings.json")).json()
        if f["device_id"] == world.orgs["a"].device
    )
    assert raw_finding["vendor"] == "=1+2 Vendor"
