"""Exports: CSV and JSON of assets and findings, OCSF Vulnerability Findings, CycloneDX 1.6."""

import csv
import io
import json

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
    assert event["device"]["desc"] == "Acme PLC-a"
    assert event["unmapped"]["device_vendor"] == "Acme"


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


def _failing_after_first_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of one row, and the second row's shaping fails: a failure after the status is sent
    (the store going away mid-download, a bug in a row) without waiting for one to happen."""
    monkeypatch.setattr(exports, "PAGE", 1)
    shape = exports._asset_row
    calls = 0

    def failing(*args: object) -> object:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("store went away")
        return shape(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(exports, "_asset_row", failing)


@pytest.mark.parametrize("export", ["assets.csv", "assets.json"])
async def test_exports_failing_mid_stream_end_with_the_truncation_marker(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch, export: str
) -> None:
    _failing_after_first_row(monkeypatch)
    response = await client.get(f"/api/v1/exports/{export}")
    assert response.status_code == 200  # sent before the failure
    assert response.text.endswith(exports.TRUNCATED_MARKER)
    assert world.orgs["a"].device in response.text
    if export.endswith(".json"):
        with pytest.raises(json.JSONDecodeError):
            response.json()  # a client that parses cannot take it for a whole export


async def test_exports_failing_on_the_first_page_is_an_error_status(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("store went away")

    monkeypatch.setattr(exports, "_asset_row", broken)
    response = await client.get("/api/v1/exports/assets.json")
    assert response.status_code == 500
    assert exports.TRUNCATED_MARKER not in response.text


async def test_exports_complete_carry_no_marker(client: httpx.AsyncClient, world: World) -> None:
    for export in ("assets.csv", "assets.json", "findings.csv", "inventory.cdx.json"):
        response = await client.get(f"/api/v1/exports/{export}")
        assert response.status_code == 200
        assert "cybermission-export-truncated" not in response.text
