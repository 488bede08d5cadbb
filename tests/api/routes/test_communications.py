"""GET /api/v1/communications: the communication map, filtered, paged, and each organisation's
own (a partner never sees another's conversations)."""

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine

from cybermission.auth.models import Role
from cybermission.db import session_scope
from cybermission.inventory.communications import CommunicationSeen, record_communications
from tests.api.world import build_world

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _seen(
    client: str, function: str, *, at: int, organization: str | None = None, packets: int = 1
) -> CommunicationSeen:
    return CommunicationSeen(
        organization_id=organization,
        site_id=None,
        client_address=client,
        server_address="127.40.1.10",
        port=502,
        transport="tcp",
        protocol="modbus",
        function=function,
        packets=packets,
        first_seen_at=T0 + timedelta(minutes=at),
        last_seen_at=T0 + timedelta(minutes=at),
    )


async def test_communications_add_up_batches_and_filter_by_function(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    with session_scope(engine) as session:
        record_communications(session, [_seen("127.40.1.5", "read", at=0, packets=3)])
    with session_scope(engine) as session:
        recorded = record_communications(
            session,
            [_seen("127.40.1.5", "read", at=5, packets=2), _seen("127.40.1.6", "write", at=6)],
        )
    # The read conversation was already on the map; its client is no new talker either.
    assert [(r.new, r.new_talker) for r in recorded] == [(False, False), (True, True)]
    body = (await client.get("/api/v1/communications", params={"function": "read"})).json()
    (read,) = body["items"]
    assert read["packets"] == 5
    assert read["first_seen_at"].startswith("2026-01-01T00:00")
    assert read["last_seen_at"].startswith("2026-01-01T00:05")
    every = (await client.get("/api/v1/communications", params={"limit": 1})).json()
    assert every["items"][0]["function"] == "write"  # most recently seen first
    assert every["next_cursor"] is not None


async def test_communications_refuse_an_unknown_function(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/communications", params={"function": "erase"})
    assert response.status_code == 422


async def test_communications_of_another_organisation_are_not_seen(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    world = build_world(engine)
    with session_scope(engine) as session:
        record_communications(
            session,
            [
                _seen("127.40.1.5", "write", at=0, organization=world.orgs["a"].organization),
                _seen("127.40.2.5", "program", at=1, organization=world.orgs["b"].organization),
            ],
        )
    own = await client.get("/api/v1/communications", headers=world.auth(Role.VIEWER, "a"))
    assert [i["function"] for i in own.json()["items"]] == ["write"]
    every = await client.get("/api/v1/communications")
    assert {i["function"] for i in every.json()["items"]} == {"write", "program"}
