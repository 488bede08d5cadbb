"""Killing the delivery worker (kill -9) mid-delivery loses nothing: the outbox resumes after a
restart and only the delivery that was in flight is sent twice, with the same idempotency key."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import select

from cybermission.alerts.models import ChannelKind, Delivery, DeliveryStatus
from cybermission.alerts.service import create_channel, create_policy
from cybermission.db import session_scope
from tests.alerts.conftest import SECRET, HttpReceiver, add_events


def _worker(engine: Engine, log: Path) -> subprocess.Popen[bytes]:
    url = engine.url.render_as_string(hide_password=False)
    with log.open("ab") as sink:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cybermission.alerts.worker",
                "--database-url",
                url,
                "--poll-s",
                "0.05",
            ],
            stdout=sink,
            stderr=sink,
        )


def _all_delivered(engine: Engine, expected: int, deadline_s: float = 60.0) -> None:
    # A deadline against hanging, not a speed assertion.
    stop = time.monotonic() + deadline_s
    while time.monotonic() < stop:
        with session_scope(engine) as session:
            statuses = [d.status for d in session.exec(select(Delivery)).all()]
        if len(statuses) == expected and set(statuses) == {DeliveryStatus.DELIVERED}:
            return
        time.sleep(0.05)
    raise AssertionError(f"deliveries not done: {Counter(statuses)}")


def test_worker_killed_mid_delivery_loses_nothing(
    engine: Engine, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    with session_scope(engine) as session:
        channel = create_channel(
            session,
            name="soc",
            kind=ChannelKind.WEBHOOK,
            config={"url": http_receiver.url, "secret": SECRET, "timeout_s": 30},
        )
        create_policy(session, name="all", channel_id=channel.id, kinds=["finding.created"])
    before = add_events(engine, 12)
    http_receiver.block_on = 5
    log = tmp_path / "worker.log"
    first = _worker(engine, log)
    try:
        assert http_receiver.blocked.wait(60), log.read_text()
        os.kill(first.pid, signal.SIGKILL)  # mid-delivery: the 5th request is unanswered
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    http_receiver.release.set()
    during = add_events(engine, 4)  # the pipeline goes on while the worker is down

    second = _worker(engine, log)
    try:
        _all_delivered(engine, expected=16)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, log.read_text()

    expected = {f"{e.id}:{channel.id}" for e in before + during}
    received = Counter(http_receiver.received_keys())
    assert set(received) == expected  # every event, nothing else
    assert all(r.signature_ok for r in http_receiver.received)
    duplicated = {key for key, n in received.items() if n > 1}
    assert duplicated == {http_receiver.blocked_key}  # only the one in flight, and once more
    assert received[http_receiver.blocked_key] == 2
