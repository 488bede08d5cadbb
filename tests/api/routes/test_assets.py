"""GET /api/v1/assets (cursor pagination) and /api/v1/assets/{id} (addresses, services, changes)."""

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine

from cybermission.db import session_scope
from cybermission.inventory.models import ChangeEvent, ChangeKind, Device, IPAddress, Service
from tests.api.conftest import assert_problem

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _seed_devices(engine: Engine, count: int) -> list[str]:
    with session_scope(engine) as session:
        devices = [
            Device(name=f"plc-{i}", vendor="Schneider Electric", first_seen_at=T0 + timedelta(i))
            for i in range(count)
        ]
        session.add_all(devices)
        return [d.id for d in devices]


async def test_assets_pages_with_cursor(client: httpx.AsyncClient, engine: Engine) -> None:
    ids = _seed_devices(engine, 5)
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/assets", params=params)).json()
        sizes.append(len(page["items"]))
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1]
    assert seen == ids  # oldest first, each once


async def test_assets_empty_store_has_no_cursor(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/assets")).json() == {"items": [], "next_cursor": None}


async def test_assets_bad_cursor_is_422(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.get("/api/v1/assets", params={"cursor": "not-a-cursor"}), 422, "invalid-input"
    )
    assert str(body["detail"]).startswith("cursor:")


async def test_assets_limit_is_bounded(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.get("/api/v1/assets", params={"limit": 100_000}), 422, "invalid-request"
    )
    assert [e["field"] for e in body["errors"]] == ["limit"]


async def test_asset_detail_has_addresses_services_changes(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    [device_id] = _seed_devices(engine, 1)
    with session_scope(engine) as session:
        session.add(IPAddress(address="127.40.3.4", device_id=device_id))
        session.add(
            Service(
                device_id=device_id,
                address="127.40.3.4",
                port=502,
                transport="tcp",
                protocol="modbus",
                facts={"vendor": "Schneider Electric"},
            )
        )
        session.add(ChangeEvent(device_id=device_id, kind=ChangeKind.DEVICE_NEW, at=T0))
    response = await client.get(f"/api/v1/assets/{device_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == device_id
    assert body["addresses"] == ["127.40.3.4"]
    assert [(s["port"], s["protocol"]) for s in body["services"]] == [(502, "modbus")]
    assert [c["kind"] for c in body["recent_changes"]] == ["device-new"]


async def test_asset_unknown_is_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/v1/assets/nope"), 404, "not-found")
    assert "nope" in str(body["detail"])


async def test_assets_search_matches_attributes_and_addresses(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    with session_scope(engine) as session:
        m340 = Device(name="pump-3", vendor="Schneider Electric", model="BMX P34 2020")
        wago = Device(name="tank", vendor="WAGO", model="750-881", serial="0030DE0A1B2C")
        odd = Device(name="100% sure_", vendor="ACME")
        session.add_all([m340, wago, odd])
        session.flush()
        session.add(IPAddress(address="127.40.9.13", device_id=wago.id))
        ids = {"m340": m340.id, "wago": wago.id, "odd": odd.id}

    async def found(term: str) -> list[str]:
        page = (await client.get("/api/v1/assets", params={"search": term})).json()
        return sorted(item["id"] for item in page["items"])

    assert await found("p34 2020") == [ids["m340"]]  # any case
    assert await found("0030de") == [ids["wago"]]  # serial
    assert await found("127.40.9.1") == [ids["wago"]]  # part of an address
    assert await found("100%") == [ids["odd"]]  # % and _ are literal, not wildcards
    assert await found("_") == [ids["odd"]]
    assert await found("nothing like it") == []
