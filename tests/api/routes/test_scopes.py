"""GET/POST /api/v1/scopes."""

import httpx

from tests.api.conftest import assert_problem


async def test_scopes_create_then_list(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/scopes",
        json={
            "name": "plant-a",
            "cidrs": ["127.40.1.0/24"],
            "excludes": ["127.40.1.9/32"],
            "reference": "contract 42",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "plant-a"
    assert body["cidrs"] == ["127.40.1.0/24"]
    assert body["excludes"] == ["127.40.1.9/32"]
    listed = await client.get("/api/v1/scopes")
    assert [s["id"] for s in listed.json()] == [body["id"]]


async def test_scopes_duplicate_name_is_409(client: httpx.AsyncClient) -> None:
    payload = {"name": "plant-b", "cidrs": ["127.40.2.0/24"]}
    assert (await client.post("/api/v1/scopes", json=payload)).status_code == 201
    body = assert_problem(await client.post("/api/v1/scopes", json=payload), 409, "conflict")
    assert "plant-b" in str(body["detail"])
    assert len((await client.get("/api/v1/scopes")).json()) == 1


async def test_scopes_too_wide_network_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/scopes", json={"name": "all", "cidrs": ["0.0.0.0/0"]})
    body = assert_problem(response, 422, "invalid-input")
    assert str(body["detail"]).startswith("cidrs:")
    assert (await client.get("/api/v1/scopes")).json() == []


async def test_scopes_missing_cidrs_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/scopes", json={"name": "nothing"})
    body = assert_problem(response, 422, "invalid-request")
    assert body["errors"] == [
        {"field": "cidrs", "in": "body", "message": "Field required", "type": "missing"}
    ]
