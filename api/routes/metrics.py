"""/metrics in the Prometheus text format: scans, durations, devices, findings, alert deliveries,
sites' sensors.

The figures come from the store at scrape time (a custom collector over a few GROUP BY queries),
so every replica reports the same truth and nothing is lost on restart. Open like /healthz:
counts only, no identifiers (alert channels are labelled by their name, as an operator's
dashboard shows them).
"""

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlmodel import Session

from api.deps import get_engine, get_settings
from cybermission.alerts.service import (
    count_dead_lettered_by_channel,
    count_deliveries_by_channel,
    oldest_pending_by_channel,
)
from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.findings.service import count_findings_by_state
from cybermission.inventory.queries import count_devices, count_devices_by_protocol
from cybermission.scans.service import count_scan_runs_by_status, list_scan_durations_s
from cybermission.sensors.metrics import SensorCollector

router = APIRouter(tags=["health"])

# Scan durations span seconds (a /28) to hours (a metropolis).
DURATION_BUCKETS_S = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
# The histogram covers the latest runs: bounded work per scrape.
DURATION_WINDOW = 10_000


class StoreCollector(Collector):
    """Reads the store at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        with session_scope(self._engine) as session:
            scans = GaugeMetricFamily(
                "cybermission_scans", "Scan runs by status", labels=["status"]
            )
            for run_status, runs in count_scan_runs_by_status(session=session):
                scans.add_metric([str(run_status)], runs)
            yield scans

            durations = list_scan_durations_s(session=session, limit=DURATION_WINDOW)
            buckets = [
                (str(bound), sum(1 for d in durations if d <= bound))
                for bound in DURATION_BUCKETS_S
            ]
            buckets.append(("+Inf", len(durations)))
            yield HistogramMetricFamily(
                "cybermission_scan_duration_seconds",
                f"Durations of the latest {DURATION_WINDOW} finished scan runs",
                buckets=buckets,
                sum_value=sum(durations),
            )

            devices = GaugeMetricFamily(
                "cybermission_devices",
                "Devices with an open service, by protocol",
                labels=["protocol"],
            )
            for protocol, count in count_devices_by_protocol(session=session, visible_to=None):
                devices.add_metric([protocol], count)
            yield devices
            yield GaugeMetricFamily(
                "cybermission_devices_total",
                "Devices in the inventory",
                value=count_devices(session=session, visible_to=None),
            )

            findings = GaugeMetricFamily(
                "cybermission_findings",
                "Findings by severity and state",
                labels=["severity", "status"],
            )
            for severity, status, count in count_findings_by_state(session=session):
                findings.add_metric([str(severity), str(status)], count)
            yield findings
            yield from _alert_metrics(session)


def _alert_metrics(session: Session) -> Iterator[Metric]:
    """Deliveries per channel and state, dead letters, and how far behind each channel is."""
    deliveries = GaugeMetricFamily(
        "cybermission_alert_deliveries",
        "Alert deliveries by channel and status (pending, delivered, failed, dead_letter)",
        labels=["channel", "status"],
    )
    for channel, delivery_status, count in count_deliveries_by_channel(session=session):
        deliveries.add_metric([channel, str(delivery_status)], count)
    yield deliveries
    dead = CounterMetricFamily(
        "cybermission_alert_dead_letters",
        "Deliveries that exhausted the retry horizon, by channel (redelivered since or not)",
        labels=["channel"],
    )
    for channel, count in count_dead_lettered_by_channel(session=session):
        dead.add_metric([channel], count)
    yield dead
    lag = GaugeMetricFamily(
        "cybermission_alert_oldest_pending_seconds",
        "Age of each channel's oldest delivery still waiting (a receiver that is down)",
        labels=["channel"],
    )
    now = utcnow()
    for channel, planned_at in oldest_pending_by_channel(session=session):
        lag.add_metric([channel], max(0.0, (now - planned_at).total_seconds()))
    yield lag


def _registry(
    request: Request,
    engine: Annotated[Engine, Depends(get_engine)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> CollectorRegistry:
    # One registry per application, never the process-global default (tests build many apps).
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(engine))
        # Per-site figures of the distributed mode (issue 6, scenario 13); silent without sensors.
        registry.register(SensorCollector(engine, settings.broker))
        request.app.state.metrics_registry = registry
    return registry


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"}},
)
def metrics(registry: Annotated[CollectorRegistry, Depends(_registry)]) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
