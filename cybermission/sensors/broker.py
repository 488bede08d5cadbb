"""Confirmed publication of Celery task messages to RabbitMQ (the relay's and the sensor's side).

The topology (vhosts, queues, permissions, shovels) and its provisioning are in
:mod:`cybermission.sensors.topology`.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery  # type: ignore[import-untyped]
from kombu import Connection  # type: ignore[import-untyped]
from kombu.exceptions import KombuError  # type: ignore[import-untyped]

from cybermission.sensors.topology import BrokerError

SCAN_TASK = "cybermission.sensors.scan_chunk"
INGEST_TASK = "cybermission.sensors.ingest_part"
TRAFFIC_TASK = "cybermission.sensors.ingest_traffic"
# Journal keys of a listening session's batches start so (``sensors/listening.py``): the journal
# holds chunk parts and traffic batches alike, and the key says which task carries each.
TRAFFIC_KEY_PREFIX = "traffic."

# What the sensor's worker and the centre's ingest worker share: JSON only, one task at a time,
# acked once done (a crash before means a redelivery), no results, events or remote control.
WORKER_CONF: Mapping[str, Any] = {
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": None,
    "accept_content": ["json"],
    "task_serializer": "json",
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_create_missing_queues": False,
    "task_ignore_result": True,
    "worker_enable_remote_control": False,
    "worker_send_task_events": False,
    "task_send_sent_event": False,
    "worker_hijack_root_logger": False,
    "worker_redirect_stdouts": False,
    # The solo pool runs the task in the consumer's loop: the ack and the next delivery follow at
    # once (a thread pool waited for the loop's next wake-up). AMQP heartbeats cannot be answered
    # during a task there, so they are off: a chunk lasts minutes and TCP keepalive and the
    # reaper cover a dead link.
    "broker_heartbeat": 0,
}
# How both run it: one solo worker, none of Celery's gossip, mingle or event heartbeats (each
# worker is alone on its queue).
WORKER_OPTIONS: Mapping[str, Any] = {
    "pool": "solo",
    "concurrency": 1,
    "without_gossip": True,
    "without_mingle": True,
    "without_heartbeat": True,
    "quiet": True,
}


def task_for(journal_key: str) -> str:
    """The central task that applies what the journal keeps under ``journal_key``."""
    return TRAFFIC_TASK if journal_key.startswith(TRAFFIC_KEY_PREFIX) else INGEST_TASK


def publish_task(
    url: str,
    *,
    exchange: str,
    routing_key: str,
    task_name: str,
    args: Sequence[Any],
    task_id: str,
    timeout_s: float,
    ssl: Any = None,
) -> None:
    """Publish one Celery task message (protocol 2, JSON) and wait for the broker's confirm.

    Returns only once RabbitMQ has taken responsibility for the message; raises BrokerError if it
    refused it or cannot be reached, so the caller keeps its outbox row or journal entry.
    """
    app = Celery(set_as_current=False)
    headers, properties, body, _sent = app.amqp.as_task_v2(task_id, task_name, args=list(args))
    try:
        _publish(
            url,
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            timeout_s=timeout_s,
            ssl=ssl,
            headers=headers,
            **properties,
        )
    finally:
        app.close()


def publish_message(
    url: str,
    *,
    exchange: str,
    routing_key: str,
    body: Mapping[str, Any],
    expires_in_s: float,
    timeout_s: float,
    ssl: Any = None,
) -> None:
    """Publish one plain JSON message (not a task: read with ``basic_get``), persistent, that
    the broker drops after ``expires_in_s``; returns once confirmed, else raises BrokerError."""
    _publish(
        url,
        exchange=exchange,
        routing_key=routing_key,
        body=dict(body),
        timeout_s=timeout_s,
        ssl=ssl,
        expiration=max(1.0, expires_in_s),  # kombu takes seconds, sends milliseconds
    )


def _publish(
    url: str,
    *,
    exchange: str,
    routing_key: str,
    body: Any,
    timeout_s: float,
    ssl: Any,
    **properties: Any,
) -> None:
    try:
        with Connection(
            url,
            ssl=ssl,
            connect_timeout=timeout_s,
            transport_options={"confirm_publish": True, "max_retries": 0},
        ) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout_s)
            producer = conn.Producer(auto_declare=False)
            producer.publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                serializer="json",
                delivery_mode=2,
                declare=[],
                timeout=timeout_s,
                **properties,
            )
    except (KombuError, OSError, ConnectionError) as exc:
        raise BrokerError(f"publish to {exchange or 'default'}/{routing_key}: {exc}") from exc
    except Exception as exc:  # amqp raises its own tree (AccessRefused, NotFound ...)
        if exc.__class__.__module__.startswith(("amqp", "kombu")):
            raise BrokerError(f"publish to {exchange or 'default'}/{routing_key}: {exc}") from exc
        raise


def check_broker(url: str, *, timeout_s: float, ssl: Any = None) -> None:
    """Open and close one AMQP connection (the TLS handshake and login included): a health
    check. Raises BrokerError naming why it failed."""
    try:
        with Connection(url, connect_timeout=timeout_s, ssl=ssl) as connection:
            connection.ensure_connection(max_retries=1)
    except (KombuError, OSError) as exc:
        raise BrokerError(f"broker: {exc.__class__.__name__}: {exc}") from exc
