"""The site sensor: a Celery worker that scans chunks of its own site and sends results back.

Late acks, prefetch 1, concurrency 1, JSON only, ``asyncio.run`` per task (SCALE-OUT.md). It never
touches the central store: it re-checks each chunk against the networks it was enrolled for,
journals results locally, and publishes them to its site's ``results`` exchange with publisher
confirms. A killed sensor leaves its chunk unacknowledged: RabbitMQ redelivers it.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import uuid
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery  # type: ignore[import-untyped]
from kombu import Connection, Queue  # type: ignore[import-untyped]
from kombu.exceptions import KombuError  # type: ignore[import-untyped]

from cybermission.clock import utcnow
from cybermission.config import Settings
from cybermission.errors import CybermissionError, ScopeError, ValidationError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.journal import Journal
from cybermission.probes import Probe, load_probes
from cybermission.scans.host_messages import HostReportMessage, RunError
from cybermission.scans.passive import RingSpec
from cybermission.scans.probing import HostReport, select_probes
from cybermission.scans.sweep import HostResult, sweep
from cybermission.scans.sweep_handoff import probe_hosts
from cybermission.scans.targets import expand_targets
from cybermission.sensors.broker import (
    SCAN_TASK,
    WORKER_CONF,
    WORKER_OPTIONS,
    publish_task,
    task_for,
)
from cybermission.sensors.messages import (
    CancelNotice,
    ChunkMessage,
    ChunkOutcome,
    MessageError,
    ResultsPart,
    read_message,
    write_message,
)
from cybermission.sensors.topology import (
    RESULTS,
    SCAN_QUEUE,
    BrokerError,
    amqp_ssl,
    control_queue,
)

logger = logging.getLogger(__name__)

# Hosts per results part: a part stays far below RabbitMQ's frame and message limits.
PART_HOSTS = 128


@dataclass(frozen=True, slots=True)
class Bundle:
    """What ``sensors enroll`` printed once: where to connect, who to be, which CA to pin."""

    sensor_id: str
    site: str
    broker_url: str
    networks: tuple[str, ...]
    ca_pem: str | None = None

    @classmethod
    def load(cls, path: Path) -> "Bundle":
        try:
            data = json.loads(path.read_text())
            return cls(
                sensor_id=str(data["sensor_id"]),
                site=str(data["site"]),
                broker_url=str(data["broker_url"]),
                networks=tuple(str(n) for n in data["networks"]),
                ca_pem=data.get("ca_pem"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValidationError(f"bundle: {path} is not an enrolment bundle ({exc})") from exc

    def guard(self) -> ScopeGuard:
        return ScopeGuard([ScopeRule.build(f"sensor-{self.site}", self.networks)])

    def ssl_options(self) -> dict[str, Any] | bool:
        """TLS trusting the bundle's CA alone (pinned), hostname checked, when the URL is amqps."""
        try:
            return amqp_ssl(self.broker_url, self.ca_pem)
        except ValidationError as exc:
            raise ValidationError(f"bundle: {exc}") from exc


@dataclass(slots=True)
class ChunkResult:
    reports: list[HostReport] = field(default_factory=list)
    hosts_swept: int = 0
    hosts_live: int = 0
    open_ports: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


async def scan_chunk(
    targets: Sequence[str],
    ports: Sequence[int],
    udp_ports: Sequence[int],
    *,
    guard: ScopeGuard,
    settings: Settings,
    probes: Mapping[str, Probe] | None = None,
) -> ChunkResult:
    """Sweep and identify a chunk's targets, as the embedded pipeline does, without a store."""
    result = ChunkResult()
    pacing = settings.pacing.effective()
    plan = select_probes(
        probes if probes is not None else load_probes(), settings, udp_ports=udp_ports
    )
    swept = sweep(expand_targets(targets, guard=guard), ports, guard=guard, pacing=pacing)
    async with aclosing(probe_hosts(swept, plan=plan, guard=guard, pacing=pacing)) as probed:
        async for item in probed:
            if isinstance(item, HostResult):
                result.hosts_swept += 1
                result.errors.extend(
                    {"target": item.address, "stage": "sweep", "error": e} for e in item.errors
                )
                if item.open_ports:
                    result.hosts_live += 1
                    result.open_ports += len(item.open_ports)
            elif item.open_ports or item.observations or item.errors:
                if not item.open_ports:
                    result.hosts_live += 1
                result.reports.append(item)
    result.reports.sort(key=lambda r: r.address)
    return result


def result_parts(
    chunk: ChunkMessage, state: ChunkOutcome, result: ChunkResult
) -> list[ResultsPart]:
    """The chunk's results in parts; the last one carries the chunk's totals."""
    batches = [
        result.reports[i : i + PART_HOSTS] for i in range(0, len(result.reports), PART_HOSTS)
    ]
    batches = batches or [[]]
    parts: list[ResultsPart] = []
    for number, batch in enumerate(batches):
        last = number == len(batches) - 1
        parts.append(
            ResultsPart(
                chunk_id=chunk.chunk_id,
                scan_run_id=chunk.scan_run_id,
                part=number,
                state=state,
                reports=[HostReportMessage.of(r) for r in batch],
                last=last,
                hosts_swept=result.hosts_swept if last else 0,
                hosts_live=result.hosts_live if last else 0,
                open_ports=result.open_ports if last else 0,
                errors=[RunError.model_validate(e) for e in result.errors[:200]] if last else [],
            )
        )
    return parts


class CancelNotices:
    """The sensor's own notice queue (``control.<sensor id>`` in its site vhost), read with
    ``basic_get``: each notice is kept in the journal before it is acknowledged, so a cancel
    outlives a restart of the sensor."""

    def __init__(self, bundle: Bundle, journal: Journal, *, timeout_s: float) -> None:
        self._bundle = bundle
        self._journal = journal
        self._timeout_s = timeout_s
        self._queue = control_queue(bundle.sensor_id)
        self._warned = False

    def poll(self) -> int:
        """Journal every waiting notice; returns how many. A broker out of reach, or a queue not
        provisioned (a centre of an older release), reads as no notice, logged once."""
        read = 0
        try:
            with Connection(
                self._bundle.broker_url,
                ssl=self._bundle.ssl_options(),
                connect_timeout=self._timeout_s,
            ) as conn:
                conn.ensure_connection(max_retries=1, timeout=self._timeout_s)
                channel = conn.default_channel
                while (message := channel.basic_get(self._queue, no_ack=False)) is not None:
                    self._keep(message.body)
                    channel.basic_ack(message.delivery_tag)
                    read += 1
        except Exception as exc:  # kombu, amqp (AccessRefused, NotFound ...), OSError
            if not isinstance(
                exc, KombuError | OSError
            ) and not exc.__class__.__module__.startswith(("amqp", "kombu")):
                raise
            if not self._warned:
                logger.warning("cancel notices unread", extra={"error": str(exc)})
                self._warned = True
        else:
            self._warned = False
        return read

    def _keep(self, body: bytes | str) -> None:
        text = body if isinstance(body, str) else body.decode(errors="replace")
        try:
            notice: CancelNotice | None = read_message(CancelNotice, json.loads(text))
            error = ""
        except (ValueError, MessageError) as exc:
            notice, error = None, str(exc)
        if notice is None:
            self._journal.refuse(text, error)
            logger.error("cancel notice refused", extra={"error": error})
            return
        self._journal.cancel_run(
            notice.scan_run_id, reason=notice.reason, until=notice.until.isoformat()
        )
        logger.info("run cancelled by the centre", extra={"scan_run_id": notice.scan_run_id})


class SensorRuntime:
    """The sensor's state shared by its task and its flusher thread."""

    def __init__(self, bundle: Bundle, settings: Settings, journal: Journal) -> None:
        self.bundle = bundle
        self.settings = settings
        self.journal = journal
        self.guard = bundle.guard()
        self.notices = CancelNotices(bundle, journal, timeout_s=settings.broker.confirm_timeout_s)
        self._flush_lock = threading.Lock()

    def flush(self, chunk_id: str | None = None) -> int:
        """Publish unconfirmed parts, confirmed one by one; stops at the first broker refusal."""
        published = 0
        with self._flush_lock:
            for item in self.journal.unconfirmed(chunk_id):
                try:
                    publish_task(
                        self.bundle.broker_url,
                        exchange=RESULTS,
                        routing_key=RESULTS,
                        task_name=task_for(item.chunk_id),
                        args=[item.body],
                        task_id=f"{item.chunk_id}.{item.part}.{uuid.uuid4().hex[:8]}",
                        timeout_s=self.settings.broker.confirm_timeout_s,
                        ssl=self.bundle.ssl_options(),
                    )
                except BrokerError as exc:
                    logger.warning(
                        "results buffered", extra={"chunk_id": item.chunk_id, "error": str(exc)}
                    )
                    break
                self.journal.confirm(item.chunk_id, item.part)
                published += 1
        return published

    def handle(self, message: object) -> str:
        """Scan one chunk once; returns what happened (for logs and tests)."""
        try:
            chunk = read_message(ChunkMessage, message)
        except MessageError as exc:
            return self.refuse(message, exc)
        if self.journal.finished(chunk.chunk_id):
            # A redelivery of finished work: probe nothing, re-publish what is unconfirmed.
            self.flush(chunk.chunk_id)
            return "replayed"
        self.notices.poll()
        if self.journal.cancelled(chunk.scan_run_id) is not None:
            return self.cancelled(chunk)
        state: ChunkOutcome
        if utcnow() > chunk.not_after:
            state, result = "skipped", ChunkResult()
        else:
            try:
                # Defence in depth: the chunk must lie inside the networks of the enrolment.
                expand_targets(chunk.targets, guard=self.guard)
            except (ScopeError, ValidationError) as exc:
                state = "failed"
                result = ChunkResult(errors=[{"target": None, "stage": "scope", "error": str(exc)}])
            else:
                state = "done"
                scanned = asyncio.run(self._scan_unless_cancelled(chunk))
                if scanned is None:
                    return self.cancelled(chunk)
                result = scanned
        parts = result_parts(chunk, state, result)
        self.journal.record(chunk.chunk_id, state, [write_message(p) for p in parts])
        self.flush(chunk.chunk_id)
        logger.info("chunk finished", extra={"chunk_id": chunk.chunk_id, "state": state})
        return state

    async def _scan_unless_cancelled(self, chunk: ChunkMessage) -> ChunkResult | None:
        """Scan the chunk, reading the notices every ``control_poll_s`` meanwhile; None when its
        run was cancelled (the scan is stopped: its sockets closed, nothing more sent)."""
        scan = asyncio.ensure_future(
            scan_chunk(
                chunk.targets,
                chunk.ports,
                chunk.udp_ports,
                guard=self.guard,
                settings=self.settings,
            )
        )
        while True:
            done, _ = await asyncio.wait({scan}, timeout=self.settings.sensor.control_poll_s)
            if done:
                return scan.result()
            await asyncio.to_thread(self.notices.poll)
            if self.journal.cancelled(chunk.scan_run_id) is not None:
                scan.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scan
                return None

    def cancelled(self, chunk: ChunkMessage) -> str:
        """A chunk of a cancelled run: finished in the journal with nothing to send (the centre
        cancelled it already; what was probed of it is dropped whole, the chunk is the unit)."""
        self.journal.record(chunk.chunk_id, "cancelled", [])
        logger.info("chunk cancelled", extra={"chunk_id": chunk.chunk_id})
        return "cancelled"

    def refuse(self, message: object, error: MessageError) -> str:
        """Keep a chunk message this sensor cannot read (another version, or malformed) in the
        journal, probe nothing, and fail the chunk at the centre with the reason when the message
        still says which chunk it is."""
        self.journal.refuse(message, str(error))
        logger.error("chunk refused", extra={"error": str(error)})
        fields = message if isinstance(message, Mapping) else {}
        chunk_id, run_id = fields.get("chunk_id"), fields.get("scan_run_id")
        if isinstance(chunk_id, str) and isinstance(run_id, str):
            if not self.journal.finished(chunk_id):
                refusal = RunError(target=None, stage="chunk", error=f"sensor refused: {error}")
                part = ResultsPart(
                    chunk_id=chunk_id,
                    scan_run_id=run_id,
                    part=0,
                    state="failed",
                    last=True,
                    errors=[refusal],
                )
                self.journal.record(chunk_id, "failed", [write_message(part)])
            self.flush(chunk_id)
        return "refused"

    def flusher(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.sensor.flush_interval_s):
            if self.journal.buffered():
                self.flush()


def sensor_app(runtime: SensorRuntime) -> Celery:
    """The sensor's Celery app: it consumes its site's ``scan`` queue and runs one task."""
    app = Celery("cybermission-sensor", set_as_current=False)
    app.conf.update(
        WORKER_CONF,
        broker_url=runtime.bundle.broker_url,
        broker_use_ssl=runtime.bundle.ssl_options(),
        worker_concurrency=1,
        # The sensor's user may not declare anything (configure "^$"): queues are provisioned.
        task_queues=[Queue(SCAN_QUEUE, no_declare=True)],
        task_default_queue=SCAN_QUEUE,
    )

    @app.task(name=SCAN_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def scan(message: object) -> str:
        return runtime.handle(message)

    _only(app, SCAN_TASK)
    return app


def _only(app: Celery, name: str) -> None:
    """Drop Celery's built-in tasks: a worker executes exactly the one task it exists for."""
    app.finalize()
    for task_name in list(app.tasks):
        if task_name != name:
            del app.tasks[task_name]


@dataclass(frozen=True, slots=True)
class ListenOrder:
    """What a sensor that also listens captures: its mirror interface and a BPF filter."""

    interface: str
    bpf: str | None = None
    flush_every_s: float = 5.0
    ring: RingSpec | None = None  # rotating pcap files of what it captured, kept on the site


def run_sensor(bundle: Bundle, settings: Settings, *, listen: ListenOrder | None = None) -> None:
    """Run the sensor until it is stopped (SIGTERM finishes the current chunk first); with
    ``listen``, it also listens on a mirror port of its site and ships what it learns."""
    if not bundle.networks:
        raise CybermissionError("bundle: the sensor has no networks to scan")
    journal = Journal(settings.sensor.journal_path)
    runtime = SensorRuntime(bundle, settings, journal)
    stop = threading.Event()
    flusher = threading.Thread(target=runtime.flusher, args=(stop,), daemon=True)
    flusher.start()
    listener: _Listening | None = None
    if listen is not None:
        listener = _Listening(runtime, listen, stop)
        listener.thread.start()
    app = sensor_app(runtime)
    try:
        worker = app.Worker(**WORKER_OPTIONS, loglevel=settings.log_level)
        worker.start()
    finally:
        stop.set()
        if listener is not None:
            # Its last batch (the session's totals) is journalled before the journal closes.
            listener.thread.join()
        journal.close()
    if listener is not None and listener.error is not None:
        raise listener.error


class _Listening:
    """The listener's thread beside the worker; a capture that cannot start stops the sensor
    (SIGTERM to itself: the worker's own warm shutdown) and its error is the sensor's."""

    def __init__(self, runtime: SensorRuntime, order: ListenOrder, stop: threading.Event) -> None:
        self.error: CybermissionError | None = None
        self.thread = threading.Thread(
            target=self._run, args=(runtime, order, stop), name="sensor-listen"
        )

    def _run(self, runtime: SensorRuntime, order: ListenOrder, stop: threading.Event) -> None:
        # Imported here: listening.py builds on SensorRuntime, defined above.
        from cybermission.sensors.listening import listen_for_site

        try:
            listen_for_site(
                runtime,
                order.interface,
                bpf=order.bpf,
                stop=stop,
                flush_every_s=order.flush_every_s,
                ring=order.ring,
            )
        except CybermissionError as exc:
            logger.warning("listening failed", extra={"error": str(exc)})
            self.error = exc
            if not stop.is_set():
                os.kill(os.getpid(), signal.SIGTERM)
