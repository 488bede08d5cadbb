"""Scenario 13: GET /metrics exposes per site queue depth, sensor last seen and connections,
chunks by state, parts buffered on the broker and rejected parts (real RabbitMQ, PostgreSQL)."""

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from cybermission.config import Settings
from cybermission.db import session_scope
from cybermission.scans.models import ScanStatus
from cybermission.sensors.models import RejectedPart, RejectionReason
from cybermission.sensors.topology import RESULTS, SCAN_QUEUE, Management, vhost_url
from tests.sensors.conftest import Cluster

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@asynccontextmanager
async def _api(
    cluster: Cluster, settings: Settings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings or cluster.settings, engine=cluster.engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


async def _scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def _site(samples: Samples, name: str, site: str, **labels: str) -> float | None:
    labels = {"organization": "default", "site": site, **labels}
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_metrics_route_exposes_each_sites_queue_sensor_chunks_buffer_and_rejections(
    cluster: Cluster,
) -> None:
    a = cluster.site("a", ["127.30.10.0/28"])
    b = cluster.site("b", ["127.31.10.0/28"])
    _, bundle_a = cluster.enroll(a)
    cluster.enroll(b, approve=False)  # pending: B's chunks wait in its queue
    cluster.start_central()
    cluster.start_sensor(a, bundle_a)
    run_a = cluster.scan(a, chunk=8)
    assert (await cluster.wait_run(run_a)).status is ScanStatus.SUCCEEDED
    cluster.scan(b, chunk=8)
    with Management(cluster.settings.broker) as mgmt:
        await cluster.wait_for(lambda: mgmt.queue_depth(cluster.vhost(b), SCAN_QUEUE) == 2)
        # B's results shovel stopped (the central side of B unreachable): what B's side then
        # publishes waits in B's results queue, the "buffered on the broker" figure.
        mgmt._call(
            "DELETE", f"/parameters/shovel/{quote(cluster.vhost(b), safe='')}/results-to-central"
        )
        await cluster.wait_for(
            lambda: (
                not any(
                    s.get("vhost") == cluster.vhost(b) for s in mgmt._call("GET", "/shovels") or []
                )
            )
        )
    b_results = vhost_url(cluster.settings.broker.url, cluster.vhost(b))
    with Connection(b_results, connect_timeout=5) as conn:
        producer = conn.Producer(auto_declare=False)
        for _ in range(3):
            producer.publish(
                json.dumps([[{}], {}, {}]),
                exchange=RESULTS,
                routing_key=RESULTS,
                content_type="application/json",
                headers={"id": str(uuid.uuid4())},
                declare=[],
            )
    with session_scope(cluster.engine) as session:
        session.add(RejectedPart(site_id=cluster.site_id(a), reason=RejectionReason.FOREIGN))
        session.add(RejectedPart(site_id=cluster.site_id(a), reason=RejectionReason.DUPLICATE))
        session.add(RejectedPart(site_id=cluster.site_id(a), reason=RejectionReason.DUPLICATE))

    async with _api(cluster) as client:
        with Management(cluster.settings.broker) as mgmt:
            await cluster.wait_for(lambda: mgmt.queue_depth(cluster.vhost(b), RESULTS) == 3)
        samples = await _scrape(client)

    def value(name: str, site: str, **labels: str) -> float | None:
        return _site(samples, name, site, **labels)

    assert value("cybermission_site_chunks", a, state="done") == 2
    assert value("cybermission_site_chunks", a, state="pending") == 0
    assert value("cybermission_site_chunks", b, state="pending") == 2
    assert value("cybermission_site_chunks", b, state="running") == 0
    assert value("cybermission_site_chunks", b, state="failed") == 0
    assert value("cybermission_site_queue_depth", a) == 0
    assert value("cybermission_site_queue_depth", b) == 2
    assert value("cybermission_site_buffered_parts", a) == 0
    assert value("cybermission_site_buffered_parts", b) == 3
    assert value("cybermission_site_sensor_connections", a) == 1
    assert value("cybermission_site_sensor_connections", b) is None  # no approved sensor
    assert value("cybermission_sensor_last_seen_timestamp_seconds", a) is not None
    assert value("cybermission_sensor_last_seen_timestamp_seconds", b) is None  # never seen
    assert value("cybermission_site_rejected_parts", a, reason="foreign") == 1
    assert value("cybermission_site_rejected_parts", a, reason="duplicate") == 2
    assert value("cybermission_site_rejected_parts", b, reason="foreign") is None
    # The store's own figures are still there beside the sites': the run A's sensor did was
    # counted as it started (relay) and as it ended (ingestion), like an embedded one.
    assert samples[("cybermission_scans_finished_total", (("status", "succeeded"),))] == 1
    assert samples[("cybermission_scans_started_total", ())] == 2  # B's run started too


async def test_metrics_route_keeps_store_figures_when_the_broker_is_unreachable(
    cluster: Cluster,
) -> None:
    a = cluster.site("a", ["127.30.11.0/29"])
    cluster.enroll(a, approve=False)
    cluster.scan(a, chunk=8)
    # Nothing listens there: the management API is down.
    down = cluster.settings.model_copy(
        update={
            "broker": cluster.settings.broker.model_copy(
                update={"management_url": "http://127.30.250.1:9"}
            )
        }
    )
    async with _api(cluster, down) as client:
        samples = await _scrape(client)
    assert _site(samples, "cybermission_site_chunks", a, state="pending") == 1
    assert _site(samples, "cybermission_site_queue_depth", a) is None
    assert _site(samples, "cybermission_site_buffered_parts", a) is None
    assert _site(samples, "cybermission_site_sensor_connections", a) is None
