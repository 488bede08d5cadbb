"""Alert channels, policies and deliveries over HTTP: secrets never read back, roles, isolation,
and a failed delivery sent again to a real receiver."""

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.app import create_app
from cybermission.alerts.models import AlertChannel, Delivery
from cybermission.alerts.worker import DeliveryWorker, WorkerOptions
from cybermission.auth.models import Role
from cybermission.config import Settings
from tests.alerts.conftest import SECRET, HttpReceiver, add_events, http_receiver  # noqa: F401
from tests.api.conftest import AUTH, assert_problem, served
from tests.api.world import T0, World, build_world


@pytest.fixture
def world(sqlite_engine: Engine) -> World:
    return build_world(sqlite_engine)


@pytest.fixture
async def http(
    api_settings: Settings, sqlite_engine: Engine, world: World
) -> AsyncIterator[httpx.AsyncClient]:
    async with served(create_app(api_settings, engine=sqlite_engine)) as client:
        yield client


def _webhook(url: str, name: str = "soc") -> dict[str, object]:
    return {"name": name, "kind": "webhook", "config": {"url": url, "secret": SECRET}}


async def test_alert_channel_secret_is_write_only(http: httpx.AsyncClient) -> None:
    created = await http.post(
        "/api/v1/alert-channels", json=_webhook("http://127.24.0.20:9/hook"), headers=AUTH
    )
    assert created.status_code == 201, created.text
    assert created.json()["config"]["secret"] == "***"
    listed = (await http.get("/api/v1/alert-channels", headers=AUTH)).text
    assert SECRET not in listed


async def test_alert_channel_bad_config_names_the_field(http: httpx.AsyncClient) -> None:
    body = {"name": "siem", "kind": "syslog", "config": {"host": "127.24.0.21", "port": 0}}
    response = await http.post("/api/v1/alert-channels", json=body, headers=AUTH)
    assert assert_problem(response, 422, "invalid-input")["detail"].startswith("config.port")


async def test_alert_channels_need_the_manage_permission(
    http: httpx.AsyncClient, world: World
) -> None:
    operator = world.auth(Role.OPERATOR, "global")
    response = await http.post(
        "/api/v1/alert-channels", json=_webhook("http://127.24.0.20:9/"), headers=operator
    )
    assert_problem(response, 403, "forbidden")


async def test_alert_channels_of_another_organisation_are_not_found(
    http: httpx.AsyncClient, world: World
) -> None:
    body = {
        **_webhook("http://127.24.0.20:9/", "b-soc"),
        "organization_id": world.orgs["b"].organization,
    }
    theirs = (await http.post("/api/v1/alert-channels", json=body, headers=AUTH)).json()
    admin_a = world.auth(Role.ADMIN, "a")
    mine = await http.post(
        "/api/v1/alert-channels", json=_webhook("http://127.24.0.20:9/", "a-soc"), headers=admin_a
    )
    assert mine.json()["organization_id"] == world.orgs["a"].organization
    listed = (await http.get("/api/v1/alert-channels", headers=admin_a)).json()
    assert [c["name"] for c in listed] == ["a-soc"]
    assert_problem(
        await http.get(f"/api/v1/alert-channels/{theirs['id']}", headers=admin_a), 404, "not-found"
    )
    policy = {"name": "p", "channel_id": theirs["id"], "kinds": ["finding.created"]}
    assert_problem(
        await http.post("/api/v1/alert-policies", json=policy, headers=admin_a), 404, "not-found"
    )


async def test_failed_delivery_is_sent_again_on_retry(
    http: httpx.AsyncClient,
    sqlite_engine: Engine,
    http_receiver: HttpReceiver,  # noqa: F811
) -> None:
    channel = (
        await http.post("/api/v1/alert-channels", json=_webhook(http_receiver.url), headers=AUTH)
    ).json()
    policy = {
        "name": "critical",
        "channel_id": channel["id"],
        "kinds": ["finding.created"],
        "min_severity": "critical",
    }
    assert (await http.post("/api/v1/alert-policies", json=policy, headers=AUTH)).status_code == 201
    http_receiver.status = 404  # a permanent refusal: the delivery fails at once
    [event] = add_events(sqlite_engine, 1)
    await run_in_threadpool(DeliveryWorker(sqlite_engine).run_once)
    [failed] = (await http.get("/api/v1/deliveries?status=failed", headers=AUTH)).json()
    assert failed["idempotency_key"] == f"{event.id}:{channel['id']}"
    assert failed["last_error"] == "webhook: HTTP 404"
    http_receiver.status = 200
    retried = await http.post(f"/api/v1/deliveries/{failed['id']}/retry", headers=AUTH)
    assert retried.json()["status"] == "pending"
    await run_in_threadpool(DeliveryWorker(sqlite_engine).run_once)
    [done] = (await http.get("/api/v1/deliveries", headers=AUTH)).json()
    assert done["status"] == "delivered"
    assert http_receiver.received_keys() == [failed["idempotency_key"]] * 2
    again = await http.post(f"/api/v1/deliveries/{failed['id']}/retry", headers=AUTH)
    assert_problem(again, 409, "conflict")


async def test_deliveries_of_an_organisation_are_newest_first_across_its_channels(
    http: httpx.AsyncClient, sqlite_engine: Engine, world: World
) -> None:
    admin_a = world.auth(Role.ADMIN, "a")
    channels = [
        (
            await http.post(
                "/api/v1/alert-channels", json=_webhook("http://127.24.0.20:9/", name), headers=AUTH
            )
        ).json()["id"]
        for name in ("a-soc", "a-siem", "b-soc")
    ]
    with Session(sqlite_engine) as session:
        for channel_id, organization in zip(channels, ("a", "a", "b"), strict=True):
            channel = session.get(AlertChannel, channel_id)
            assert channel is not None
            channel.organization_id = world.orgs[organization].organization
            session.add(channel)
        # Alternate the two channels of A in time, so no grouping by channel reads as newest first.
        for minute in range(6):
            session.add(
                Delivery(
                    event_id=minute,
                    channel_id=channels[minute % 3],
                    idempotency_key=f"{minute}:{channels[minute % 3]}",
                    created_at=T0 + timedelta(minutes=minute),
                )
            )
        session.commit()
    listed = (await http.get("/api/v1/deliveries?limit=3", headers=admin_a)).json()
    assert [d["event_id"] for d in listed] == [4, 3, 1]


async def test_dead_letters_are_listed_counted_and_redelivered(
    http: httpx.AsyncClient,
    sqlite_engine: Engine,
    http_receiver: HttpReceiver,  # noqa: F811
    world: World,
) -> None:
    channel = (
        await http.post("/api/v1/alert-channels", json=_webhook(http_receiver.url), headers=AUTH)
    ).json()
    policy = {"name": "all", "channel_id": channel["id"], "kinds": ["finding.created"]}
    assert (await http.post("/api/v1/alert-policies", json=policy, headers=AUTH)).status_code == 201
    http_receiver.status = 503
    events = add_events(sqlite_engine, 2)
    # A horizon already spent at the first attempt: both become dead letters at once.
    worker = DeliveryWorker(sqlite_engine, options=WorkerOptions(retry_horizon_s=1e-6))
    await run_in_threadpool(worker.run_once)
    dead = (await http.get("/api/v1/deliveries?status=dead_letter", headers=AUTH)).json()
    assert sorted(d["event_id"] for d in dead) == [e.id for e in events]
    assert all(d["dead_lettered_at"] is not None for d in dead)
    metrics = (await http.get("/metrics")).text
    assert 'cybermission_alert_deliveries{channel="soc",status="dead_letter"} 2.0' in metrics
    assert 'cybermission_alert_dead_letters_total{channel="soc"} 2.0' in metrics
    viewer = world.auth(Role.VIEWER, "a")
    refused = await http.post("/api/v1/deliveries/dead-letters/redeliver", headers=viewer)
    assert refused.status_code == 403
    http_receiver.status = 200
    answer = await http.post("/api/v1/deliveries/dead-letters/redeliver", headers=AUTH)
    assert answer.json() == {"redelivered": 2}
    await run_in_threadpool(DeliveryWorker(sqlite_engine).run_once)
    delivered = (await http.get("/api/v1/deliveries?status=delivered", headers=AUTH)).json()
    assert len(delivered) == 2
    assert http_receiver.received_keys()[-2:] == [f"{e.id}:{channel['id']}" for e in events]
    metrics = (await http.get("/metrics")).text
    assert 'cybermission_alert_deliveries{channel="soc",status="delivered"} 2.0' in metrics
    # The counters: 2 planned; the head failed once (503), then both were dead-lettered;
    # redelivered, both went through.
    assert 'cybermission_alert_deliveries_planned_total{channel="soc"} 2.0' in metrics
    attempts = 'cybermission_alert_delivery_attempts_total{channel="soc",outcome='
    assert f'{attempts}"failed"}} 1.0' in metrics
    assert f'{attempts}"delivered"}} 2.0' in metrics
    # Deleting the channel deletes its deliveries: the gauges drop, the counters never do.
    deleted = await http.delete(f"/api/v1/alert-channels/{channel['id']}", headers=AUTH)
    assert deleted.status_code == 204
    metrics = (await http.get("/metrics")).text
    assert 'cybermission_alert_deliveries{channel="soc"' not in metrics
    assert 'cybermission_alert_dead_letters_total{channel="soc"} 2.0' in metrics
    assert f'{attempts}"delivered"}} 2.0' in metrics
