"""Per-site metrics of the distributed mode, read at scrape time (issue 6, scenario 13).

Register :class:`SensorCollector` beside the API's store collector: queue depth of each site's
``scan`` queue, results waiting in the site's ``results`` queue (buffered on the broker side),
sensors' last contact, chunks by state and results parts rejected at ingestion, by reason.
"""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cybermission.config import BrokerSettings
from cybermission.sensors.broker import RESULTS, SCAN_QUEUE, BrokerError, Management, site_vhost
from cybermission.sensors.models import Chunk, ChunkState, RejectedPart, Sensor
from cybermission.sites.models import Site


class SensorCollector(Collector):
    """Reads the store and the broker's management API at each scrape."""

    def __init__(self, engine: Engine, broker: BrokerSettings) -> None:
        self._engine = engine
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        with Session(self._engine) as session:
            sites = {s.id: s.slug for s in session.exec(select(Site)).all()}
            chunk_rows = session.exec(
                select(Chunk.site_id, Chunk.state, func.count()).group_by(
                    col(Chunk.site_id), col(Chunk.state)
                )
            ).all()
            seen_rows = session.exec(
                select(Sensor.site_id, func.max(Sensor.last_seen_at)).group_by(col(Sensor.site_id))
            ).all()
            rejected_rows = session.exec(
                select(RejectedPart.site_id, RejectedPart.reason, func.count()).group_by(
                    col(RejectedPart.site_id), col(RejectedPart.reason)
                )
            ).all()
        chunks = GaugeMetricFamily(
            "cybermission_site_chunks", "Chunks by site and state", labels=["site", "state"]
        )
        counts = {(site_id, str(state)): n for site_id, state, n in chunk_rows}
        for site_id, slug in sites.items():
            for state in ChunkState:
                chunks.add_metric([slug, state.value], counts.get((site_id, state.value), 0))
        yield chunks
        seen = GaugeMetricFamily(
            "cybermission_sensor_last_seen_timestamp_seconds",
            "Last results received from a site's sensors (Unix time)",
            labels=["site"],
        )
        for site_id, last in seen_rows:
            if last is not None and site_id in sites:
                seen.add_metric([sites[site_id]], last.timestamp())
        yield seen
        rejected = GaugeMetricFamily(
            "cybermission_site_rejected_parts",
            "Results parts rejected at ingestion (foreign, duplicate, malformed)",
            labels=["site", "reason"],
        )
        for rejected_site, reason, n in rejected_rows:
            rejected.add_metric([sites.get(str(rejected_site), "unknown"), str(reason)], n)
        yield rejected
        depth = GaugeMetricFamily(
            "cybermission_site_queue_depth",
            "Chunks waiting in a site's scan queue",
            labels=["site"],
        )
        buffered = GaugeMetricFamily(
            "cybermission_site_buffered_parts",
            "Results parts waiting on the broker for ingestion",
            labels=["site"],
        )
        try:
            with Management(self._broker) as mgmt:
                for slug in sites.values():
                    scan = mgmt.queue_depth(site_vhost(slug), SCAN_QUEUE)
                    waiting = mgmt.queue_depth(site_vhost(slug), RESULTS)
                    if scan is not None:
                        depth.add_metric([slug], scan)
                    if waiting is not None:
                        buffered.add_metric([slug], waiting)
        except BrokerError:
            pass  # the broker is down: the store's figures still go out; the gaps show it
        yield depth
        yield buffered
