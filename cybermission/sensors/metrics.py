"""Per-site metrics of the distributed mode, read at scrape time (issue 6, scenario 13).

``api/routes/metrics.py`` registers :class:`SensorCollector` beside the store collector: queue
depth of each site's ``scan`` queue, results parts waiting on the broker for ingestion, sensors'
last contact and open connections, chunks by state and results parts rejected at ingestion, by
reason. Each site series is labelled ``organization`` and ``site`` (slugs): a site's slug is
unique only inside its organisation. The broker is asked only about sites that have enrolled a
sensor, so the embedded mode (no sensor, often no broker) never waits on it.

What the central side cannot see is a sensor's own journal while its link is down (it cannot
report then): that backlog shows as ``cybermission_site_sensor_connections`` at 0 and a last-seen
time that stops moving while chunks stay running; the sensor logs each buffered part.
"""

from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cybermission.config import BrokerSettings
from cybermission.db import utcnow
from cybermission.sensors.models import Chunk, ChunkState, RejectedPart, Sensor, SensorState
from cybermission.sensors.topology import (
    RESULTS,
    SCAN_QUEUE,
    BrokerError,
    Management,
    site_vhost,
)
from cybermission.sites.models import Organization, Site

# A scrape must not hang on a broker that does not answer (Prometheus' default timeout is 10 s).
MANAGEMENT_TIMEOUT_S = 3.0


class SensorCollector(Collector):
    """Reads the store and the broker's management API at each scrape."""

    def __init__(self, engine: Engine, broker: BrokerSettings) -> None:
        self._engine = engine
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        with Session(self._engine) as session:
            # Site id -> its labels (organisation slug, site slug).
            sites: dict[str, tuple[str, str]] = {
                site.id: (organization, site.slug)
                for site, organization in session.exec(
                    select(Site, Organization.slug).join(
                        Organization, col(Organization.id) == col(Site.organization_id)
                    )
                ).all()
            }
            chunk_rows = session.exec(
                select(Chunk.site_id, Chunk.state, func.count()).group_by(
                    col(Chunk.site_id), col(Chunk.state)
                )
            ).all()
            sensor_rows = session.exec(
                select(Sensor.site_id, Sensor.username, Sensor.state, Sensor.last_seen_at)
            ).all()
            rejected_rows = session.exec(
                select(RejectedPart.site_id, RejectedPart.reason, func.count()).group_by(
                    col(RejectedPart.site_id), col(RejectedPart.reason)
                )
            ).all()
        # Sites with a sensor are the distributed ones: only they get chunk and broker series.
        distributed = {site_id: sites[site_id] for site_id, *_ in sensor_rows if site_id in sites}
        distributed.update(
            {site_id: sites[site_id] for site_id, *_ in chunk_rows if site_id in sites}
        )
        chunks = GaugeMetricFamily(
            "cybermission_site_chunks",
            "Chunks by site and state",
            labels=["organization", "site", "state"],
        )
        counts = {(site_id, str(state)): n for site_id, state, n in chunk_rows}
        for site_id, site_labels in sorted(distributed.items(), key=lambda item: item[1]):
            for state in ChunkState:
                chunks.add_metric(
                    [*site_labels, state.value], counts.get((site_id, state.value), 0)
                )
        yield chunks
        rejected = GaugeMetricFamily(
            "cybermission_site_rejected_parts",
            "Results parts rejected at ingestion (foreign, duplicate, malformed)",
            labels=["organization", "site", "reason"],
        )
        for rejected_site, reason, n in rejected_rows:
            labels = sites.get(str(rejected_site), ("unknown", "unknown"))
            rejected.add_metric([*labels, str(reason)], n)
        yield rejected

        live = {
            username: site_id
            for site_id, username, state, _ in sensor_rows
            if state is SensorState.APPROVED and site_id in sites
        }
        depth = GaugeMetricFamily(
            "cybermission_site_queue_depth",
            "Chunks waiting in a site's scan queue",
            labels=["organization", "site"],
        )
        buffered = GaugeMetricFamily(
            "cybermission_site_buffered_parts",
            "Results parts waiting on the broker, in the site's results queue, for ingestion",
            labels=["organization", "site"],
        )
        connections = GaugeMetricFamily(
            "cybermission_site_sensor_connections",
            "Open broker connections of a site's approved sensors",
            labels=["organization", "site"],
        )
        connected: dict[str, int] = {}
        broker_up = bool(distributed)
        if distributed:
            try:
                with Management(self._broker, timeout_s=MANAGEMENT_TIMEOUT_S) as mgmt:
                    for site_id, site_labels in sorted(
                        distributed.items(), key=lambda item: item[1]
                    ):
                        scan = mgmt.queue_depth(site_vhost(site_id), SCAN_QUEUE)
                        waiting = mgmt.queue_depth(site_vhost(site_id), RESULTS)
                        if scan is not None:
                            depth.add_metric(list(site_labels), scan)
                        if waiting is not None:
                            buffered.add_metric(list(site_labels), waiting)
                    for connection in mgmt.connections():
                        owner = live.get(str(connection.get("user")))
                        if owner is not None:
                            connected[owner] = connected.get(owner, 0) + 1
            except BrokerError:
                # The broker is down: the store's figures still go out; the gaps show it.
                broker_up = False
        if broker_up:
            for site_id in set(live.values()):
                connections.add_metric(list(sites[site_id]), connected.get(site_id, 0))
        yield depth
        yield buffered
        yield connections

        seen = GaugeMetricFamily(
            "cybermission_sensor_last_seen_timestamp_seconds",
            "Last contact with a site's sensors (Unix time): results ingested, or a connection "
            "open at scrape time",
            labels=["organization", "site"],
        )
        last: dict[str, datetime] = {}
        for site_id, _, _, at in sensor_rows:
            if at is not None and site_id in sites and (site_id not in last or at > last[site_id]):
                last[site_id] = at
        now = utcnow()
        for site_id in connected:
            last[site_id] = now  # connected now: seen now
        for site_id, at in sorted(last.items(), key=lambda item: sites[item[0]]):
            seen.add_metric(list(sites[site_id]), at.timestamp())
        yield seen
