"""/api/v1/tokens: an admin mints a token (secret shown once), it works, revoked it does not."""

import httpx

from tests.api.conftest import assert_problem


async def test_tokens_created_token_authenticates_until_revoked(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    created = await client.post("/api/v1/tokens", json={"name": "soc", "role": "viewer"})
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["token"]
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await anonymous.get("/api/v1/assets", headers=headers)).status_code == 200
    # A viewer reads but may not write.
    assert_problem(
        await anonymous.post("/api/v1/scans", json={"targets": ["127.40.0.9"]}, headers=headers),
        403,
        "forbidden",
    )
    listed = (await client.get("/api/v1/tokens")).json()
    assert [t["id"] for t in listed] == [body["id"]]
    assert secret not in str(listed)

    assert (await client.delete(f"/api/v1/tokens/{body['id']}")).status_code == 204
    refused = await anonymous.get("/api/v1/assets", headers=headers)
    assert_problem(refused, 401, "unauthenticated")
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


async def test_tokens_refuse_unknown_role(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/tokens", json={"name": "x", "role": "root"})
    assert_problem(response, 422, "invalid-request")


async def test_tokens_refuse_past_expiry(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/tokens",
        json={"name": "x", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"},
    )
    assert_problem(response, 422, "invalid-input")
