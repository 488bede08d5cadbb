"""The central ingest worker: applies sensors' results parts, relays chunks and cancel notices,
reaps late ones.

It consumes the central vhost's ``ingest`` queue, which only the sites' shovels feed, registers
only the two ingest tasks (chunks' results parts, listening sensors' traffic batches) and accepts
JSON only: a message naming any other task, or in another
content type, is neither executed nor deserialised. The site of a part is the routing key the
site's shovel stamped (``site.<site id>``), never a claim of the message.
"""

import logging
import threading

from celery import Celery, Task  # type: ignore[import-untyped]
from kombu import Exchange, Queue  # type: ignore[import-untyped]

from cybermission.config import Settings
from cybermission.db import create_db_engine, session_scope
from cybermission.migrations import upgrade_database
from cybermission.sensors.broker import INGEST_TASK, TRAFFIC_TASK, WORKER_CONF, WORKER_OPTIONS
from cybermission.sensors.ingestion import Ingestion, IngestOutcome, record_rejection
from cybermission.sensors.models import RejectionReason
from cybermission.sensors.relay import reap_chunks, relay_cancels, relay_outbox
from cybermission.sensors.service import cancel_chunks, provision_sensors
from cybermission.sensors.topology import INGEST, Management, central_ssl, vhost_url
from cybermission.sensors.traffic_ingestion import TrafficIngestion

logger = logging.getLogger(__name__)

RELAY_INTERVAL_S = 1.0
REAP_INTERVAL_S = 30.0


def ingest_app(settings: Settings) -> Celery:
    engine = create_db_engine(settings.database_url, settings.store)
    ingestion = Ingestion(engine, settings)
    app = Celery("cybermission-central", set_as_current=False)
    app.conf.update(
        WORKER_CONF,
        broker_url=vhost_url(settings.broker.url, settings.broker.central_vhost),
        broker_use_ssl=central_ssl(settings.broker),
        task_queues=[Queue(INGEST, Exchange(INGEST, type="topic"), routing_key="site.*")],
        task_default_queue=INGEST,
    )

    traffic = TrafficIngestion(engine, settings)

    def site_of(task: Task) -> str | None:
        """The site the shovel stamped, or None (and the message rejected) when it is not from
        a site's shovel (someone with central rights published it)."""
        routing_key = str((task.request.delivery_info or {}).get("routing_key") or "")
        if routing_key.startswith("site."):
            return routing_key.removeprefix("site.")
        record_rejection(
            engine, None, RejectionReason.FOREIGN, None, f"routing key {routing_key!r}"
        )
        return None

    def said(outcome: IngestOutcome) -> str:
        return "applied" if outcome.applied else f"rejected: {outcome.reason}"

    @app.task(name=INGEST_TASK, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def ingest(self: Task, part: object) -> str:
        site_id = site_of(self)
        if site_id is None:
            return "rejected"
        return said(ingestion.apply(site_id=site_id, part=part))

    @app.task(name=TRAFFIC_TASK, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def ingest_traffic(self: Task, batch: object) -> str:
        site_id = site_of(self)
        if site_id is None:
            return "rejected"
        return said(traffic.apply(site_id=site_id, batch=batch))

    app.finalize()
    for name in list(app.tasks):
        if name not in (INGEST_TASK, TRAFFIC_TASK):
            del app.tasks[name]
    return app


def _loop(settings: Settings, stop: threading.Event) -> None:
    engine = create_db_engine(settings.database_url, settings.store)
    since_reap = REAP_INTERVAL_S
    while not stop.wait(RELAY_INTERVAL_S):
        try:
            # Cancelled runs first: their chunks are never dispatched after the request.
            cancel_chunks(engine)
            relay_cancels(engine, settings)
            relay_outbox(engine, settings)
            since_reap += RELAY_INTERVAL_S
            if since_reap >= REAP_INTERVAL_S:
                reap_chunks(engine, settings)
                since_reap = 0.0
        except Exception:
            # The loop must outlive a database hiccup; the next round retries.
            logger.exception("relay round failed")


def run_central(settings: Settings, *, relay: bool = True) -> None:
    """The ingest worker, with the outbox relay and the reaper in a thread beside it."""
    engine = create_db_engine(settings.database_url, settings.store)
    upgrade_database(engine)
    with Management(settings.broker) as mgmt:
        mgmt.ensure_central()
    with session_scope(engine) as session:
        provision_sensors(session, settings)
    stop = threading.Event()
    if relay:
        threading.Thread(target=_loop, args=(settings, stop), daemon=True).start()
    app = ingest_app(settings)
    try:
        app.Worker(**WORKER_OPTIONS, loglevel=settings.log_level).start()
    finally:
        stop.set()
