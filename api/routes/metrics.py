"""/metrics in the Prometheus text format, or OpenMetrics when the scraper asks for it (its
``Accept`` header): scans, durations, devices, findings, alert deliveries and the outbox, sites'
sensors, and ``cybermission_build_info``.

Gauges (what is true now) are read from the store at scrape time with a few GROUP BY queries.
Counters and the duration histogram are monotonic: the code that starts or ends a run, plans or
sends a delivery adds to them in the same transaction (``cybermission.metric_counters``), so
deleting a channel or having more than any number of runs never makes them go down. Every
replica reports the same truth and a restart loses nothing. Open like /healthz: counts only, no
identifiers (alert channels are labelled by their name, as an operator's dashboard shows them).
"""

import platform
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlmodel import Session

from api.deps import get_engine, get_settings
from cybermission import __version__
from cybermission.alerts.service import (
    count_deliveries_by_channel,
    oldest_pending_by_channel,
    outbox_backlog,
)
from cybermission.alerts.worker import ATTEMPTS, DEAD_LETTERS, PLANNED
from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.findings.service import count_findings_by_state
from cybermission.inventory.queries import count_devices, count_devices_by_protocol
from cybermission.metric_counters import CounterSample, read_counters, read_histogram
from cybermission.scans.models import ScanStatus
from cybermission.scans.run_metrics import (
    DURATION_BUCKETS_S,
    SCAN_DURATION,
    SCANS_FINISHED,
    SCANS_STARTED,
)
from cybermission.scans.service import count_scan_runs_by_status
from cybermission.sensors.metrics import SensorCollector

router = APIRouter(tags=["health"])

# A run in one of these is not over yet; the others are counted by scans_finished_total.
IN_PROGRESS = (ScanStatus.QUEUED, ScanStatus.RUNNING)
PROMETHEUS_TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector(Collector):
    """Reads the store at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily(
            "cybermission_build",
            "The running cybermission version",
            value={"version": __version__, "python_version": platform.python_version()},
        )
        with session_scope(self._engine) as session:
            yield from _scan_metrics(session)
            yield GaugeMetricFamily(
                "cybermission_devices",
                "Devices in the inventory",
                value=count_devices(session=session, visible_to=None),
            )
            by_protocol = GaugeMetricFamily(
                "cybermission_devices_by_protocol",
                "Devices with an open service, by protocol",
                labels=["protocol"],
            )
            for protocol, count in count_devices_by_protocol(session=session, visible_to=None):
                by_protocol.add_metric([protocol], count)
            yield by_protocol
            findings = GaugeMetricFamily(
                "cybermission_findings",
                "Findings by severity and state",
                labels=["severity", "status"],
            )
            for severity, status, count in count_findings_by_state(session=session):
                findings.add_metric([str(severity), str(status)], count)
            yield findings
            yield from _alert_metrics(session)


def _scan_metrics(session: Session) -> Iterator[Metric]:
    started = read_counters(session, [SCANS_STARTED])
    yield CounterMetricFamily(
        SCANS_STARTED,
        "Scan runs that started (a queued run began, or an import)",
        value=sum(sample.value for sample in started),
    )
    finished = CounterMetricFamily(
        SCANS_FINISHED, "Scan runs that ended, by final status", labels=["status"]
    )
    for sample in sorted(read_counters(session, [SCANS_FINISHED]), key=_by_labels):
        finished.add_metric([sample.labels["status"]], sample.value)
    yield finished
    now = dict(count_scan_runs_by_status(session=session))
    in_progress = GaugeMetricFamily(
        "cybermission_scans_in_progress", "Scan runs queued or running now", labels=["status"]
    )
    for status in IN_PROGRESS:
        in_progress.add_metric([str(status)], now.get(status, 0))
    yield in_progress
    buckets, total = read_histogram(session, SCAN_DURATION, bounds=DURATION_BUCKETS_S)
    yield HistogramMetricFamily(
        SCAN_DURATION,
        "How long scan runs took, from start to end (runs cancelled while queued excluded)",
        buckets=buckets,
        sum_value=total,
    )


def _alert_metrics(session: Session) -> Iterator[Metric]:
    """Deliveries per channel and state, what was planned, attempted and dead-lettered, how far
    behind each channel and the outbox are."""
    deliveries = GaugeMetricFamily(
        "cybermission_alert_deliveries",
        "Stored alert deliveries by channel and status (pending, delivered, failed, dead_letter)",
        labels=["channel", "status"],
    )
    for channel, delivery_status, count in count_deliveries_by_channel(session=session):
        deliveries.add_metric([channel, str(delivery_status)], count)
    yield deliveries
    counters = (
        (PLANNED, "Deliveries planned by the outbox, by channel", ["channel"]),
        (
            ATTEMPTS,
            "Delivery attempts by channel and outcome (delivered; refused for good; failed, "
            "to be retried)",
            ["channel", "outcome"],
        ),
        (
            DEAD_LETTERS,
            "Deliveries that exhausted the retry horizon, by channel (redelivered since or not)",
            ["channel"],
        ),
    )
    for name, documentation, labels in counters:
        family = CounterMetricFamily(name, documentation, labels=labels)
        for sample in sorted(read_counters(session, [name]), key=_by_labels):
            family.add_metric([sample.labels[label] for label in labels], sample.value)
        yield family
    lag = GaugeMetricFamily(
        "cybermission_alert_oldest_pending_seconds",
        "Age of each channel's oldest delivery still waiting (a receiver that is down)",
        labels=["channel"],
    )
    now = utcnow()
    for channel, planned_at in oldest_pending_by_channel(session=session):
        lag.add_metric([channel], max(0.0, (now - planned_at).total_seconds()))
    yield lag
    behind, waited = outbox_backlog(session=session)
    yield GaugeMetricFamily(
        "cybermission_alert_outbox_backlog_events",
        "Stored events the outbox has not planned deliveries for yet",
        value=behind,
    )
    yield GaugeMetricFamily(
        "cybermission_alert_outbox_gap_events",
        "Event ids the outbox still waits for (a transaction that may commit late)",
        value=waited,
    )


def _by_labels(sample: CounterSample) -> list[tuple[str, str]]:
    return sorted(sample.labels.items())


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
    summary="Prometheus metrics (text exposition format, or OpenMetrics when asked)",
    operation_id="getMetrics",
    response_class=Response,
    responses={
        200: {
            "content": {PROMETHEUS_TEXT_TYPE: {}, OPENMETRICS_TYPE: {}},
            "description": "Metrics; OpenMetrics 1.0 when `Accept` names it",
        }
    },
)
def metrics(
    request: Request, registry: Annotated[CollectorRegistry, Depends(_registry)]
) -> Response:
    # prometheus_client picks OpenMetrics only when Accept names application/openmetrics-text.
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(registry), media_type=content_type)
