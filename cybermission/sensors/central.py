"""The central ingest worker: applies sensors' results parts, relays chunks and cancel notices,
reaps late ones.

It consumes the central vhost's ``ingest`` queue, which only the sites' shovels feed, registers
only the two ingest tasks (chunks' results parts, listening sensors' traffic batches) and accepts
JSON only: a message naming any other task, or in another
content type, is neither executed nor deserialised. The site of a part is the routing key the
site's shovel stamped (``site.<site id>``), never a claim of the message.

A message is acknowledged once its part is applied or its rejection recorded. One the store
failed with a transient error (``store_faults.is_transient``: a lost connection, the stall
deadline of ``store_links``, PostgreSQL down) is handed back to RabbitMQ after a pause and
delivered again, until the store takes it; any other error acknowledges it as failed (logged:
the topology has no dead-letter queue), as a redelivery would only fail the same way.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping

from celery import Celery, Task  # type: ignore[import-untyped]
from celery.exceptions import Reject  # type: ignore[import-untyped]
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
from cybermission.store_faults import describe_store_error, is_transient

logger = logging.getLogger(__name__)

RELAY_INTERVAL_S = 1.0
REAP_INTERVAL_S = 30.0
# The pause before a message the store failed goes back to the queue: doubles with each
# consecutive failure of the worker, capped (the solo worker takes nothing else meanwhile, and
# the store is down for every part alike).
REQUEUE_FIRST_DELAY_S = 0.5
REQUEUE_MAX_DELAY_S = 10.0


class _StoreBackoff:
    """Consecutive transient store failures of one worker, and the pause each one earns."""

    def __init__(self) -> None:
        self.failures = 0

    def delay_s(self, *, redelivered: bool) -> float:
        # A message delivered again counts one failure before this one at least: a worker
        # restarted during an outage does not start over from the first pause.
        self.failures = max(self.failures, 1 if redelivered else 0) + 1
        return min(REQUEUE_FIRST_DELAY_S * 2.0 ** (self.failures - 1), REQUEUE_MAX_DELAY_S)


def _naming(message: object, *fields: str) -> dict[str, object]:
    """What names a message in the logs (a part's chunk id and number, a batch's session and
    number), as far as it says."""
    if not isinstance(message, Mapping):
        return {}
    return {f: message[f] for f in fields if isinstance(message.get(f), str | int)}


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

    backoff = _StoreBackoff()

    def applied_or_requeued(
        task: Task, what: str, naming: dict[str, object], apply: Callable[[str], IngestOutcome]
    ) -> str:
        """Apply the message (``apply`` with its site); a transient store error hands it back to
        the queue after the worker's back-off (Reject with requeue: RabbitMQ delivers it again),
        any other error is raised: Celery acknowledges it as failed."""
        try:
            site_id = site_of(task)
            outcome = "rejected" if site_id is None else said(apply(site_id))
        except Exception as exc:
            error = describe_store_error(exc)
            if not is_transient(exc):
                logger.exception(
                    "ingest failed: acknowledged, not delivered again",
                    extra={"kind": what, **naming, "error": error},
                )
                raise
            redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
            delay_s = backoff.delay_s(redelivered=redelivered)
            logger.warning(
                "ingest requeued: the store failed",
                extra={
                    "kind": what,
                    **naming,
                    "error": error,
                    "redelivered": redelivered,
                    "delay_s": delay_s,
                },
            )
            time.sleep(delay_s)
            raise Reject(error, requeue=True) from None  # the error is logged above
        backoff.failures = 0
        return outcome

    @app.task(name=INGEST_TASK, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def ingest(self: Task, part: object) -> str:
        return applied_or_requeued(
            self,
            "results part",
            _naming(part, "chunk_id", "part"),
            lambda site_id: ingestion.apply(site_id=site_id, part=part),
        )

    @app.task(name=TRAFFIC_TASK, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def ingest_traffic(self: Task, batch: object) -> str:
        return applied_or_requeued(
            self,
            "traffic batch",
            _naming(batch, "session_id", "seq"),
            lambda site_id: traffic.apply(site_id=site_id, batch=batch),
        )

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
