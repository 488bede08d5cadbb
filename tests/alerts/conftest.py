"""Fixtures for alerting: real receivers on loopback (HTTP, syslog UDP/TCP) and seeded events.

Address plan: alerting tests bind 127.24.0.0/16 (schedules and dashboard use 127.24.1-3.x).
"""

import hashlib
import hmac
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine

from cybermission.db import session_scope
from cybermission.events import Event, EventKind, record_event
from tests.timing import scaled

SECRET = "s3cret-webhook-key-0123456789"
# A finding.created payload as the pipeline writes it, plus ATT&CK techniques.
FINDING: dict[str, Any] = {
    "rule_id": "modbus-unauthenticated-reachable",
    "title": "Modbus|reachable = yes #0",
    "device_id": "dev-0",
    "port": 502,
    "protocol": "modbus",
    "score": 9.5,
    "address": "127.24.9.1",
    "attack_techniques": ["T0883", "T0846"],
}


@dataclass
class Received:
    key: str
    kind: str
    timestamp: str
    signature_ok: bool
    body: dict[str, Any]


@dataclass
class HttpReceiver:
    """A webhook receiver that checks each signature; ``block_on`` holds one request open."""

    url: str = ""
    secret: str = SECRET
    received: list[Received] = field(default_factory=list)
    status: int = 200
    # The n-th request (1-based) blocks until ``release`` is set; ``blocked`` says it arrived.
    block_on: int | None = None
    blocked: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    blocked_key: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0

    def received_keys(self) -> list[str]:
        with self.lock:
            return [r.key for r in self.received]


def _handler(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with receiver.lock:
                receiver.requests += 1
                nth = receiver.requests
            timestamp = self.headers["X-Cybermission-Timestamp"]
            expected = (
                "sha256="
                + hmac.new(
                    receiver.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
                ).hexdigest()
            )
            signature_ok = hmac.compare_digest(expected, self.headers["X-Cybermission-Signature"])
            with receiver.lock:
                receiver.received.append(
                    Received(
                        key=self.headers["Idempotency-Key"],
                        kind=self.headers["X-Cybermission-Event"],
                        timestamp=timestamp,
                        signature_ok=signature_ok,
                        body=json.loads(body),
                    )
                )
            if receiver.block_on == nth:
                # Received, never acknowledged: the sender cannot know it arrived.
                receiver.blocked_key = self.headers["Idempotency-Key"]
                receiver.blocked.set()
                receiver.release.wait(30)
                self.close_connection = True
                return
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    server = ThreadingHTTPServer(("127.24.0.10", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.url = f"http://127.24.0.10:{server.server_address[1]}/hooks/cybermission"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.release.set()
    server.shutdown()
    server.server_close()


@dataclass
class SyslogListener:
    host: str
    port: int
    messages: list[bytes] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def add(self, message: bytes) -> None:
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout_s: float = scaled(5.0)) -> list[bytes]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout_s)
            return list(self.messages)


@pytest.fixture
def udp_listener() -> Iterator[SyslogListener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.24.0.11", 0))
    sock.settimeout(0.2)
    listener = SyslogListener("127.24.0.11", sock.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            listener.add(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture
def tcp_listener() -> Iterator[SyslogListener]:
    listener = SyslogListener("127.24.0.12", 0)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            # LF-framed syslog over TCP (RFC 6587 §3.4.2): one message per line.
            for line in self.rfile:
                listener.add(line.rstrip(b"\n"))

    server = socketserver.ThreadingTCPServer(("127.24.0.12", 0), Handler)
    server.daemon_threads = True
    listener.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield listener
    server.shutdown()
    server.server_close()


def add_events(engine: Engine, count: int, *, severity: str = "critical") -> list[Event]:
    """``count`` finding.created events as the pipeline writes them."""
    with session_scope(engine) as session:
        events = [
            record_event(
                session,
                EventKind.FINDING_CREATED,
                payload={
                    **FINDING,
                    "title": f"Modbus|reachable = yes #{i}",
                    "device_id": f"dev-{i}",
                    "address": f"127.24.9.{i % 250 + 1}",
                },
                subject_id=f"finding-{i}",
                severity=severity,
            )
            for i in range(count)
        ]
    return events


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Split a CEF line into its 7 header fields and its extension (unescaping per the spec)."""
    cef = line[line.index("CEF:") :]
    header: list[str] = []
    current = ""
    i = 0
    while len(header) < 7:
        ch = cef[i]
        if ch == "\\" and cef[i + 1] in "\\|":
            current += cef[i + 1]
            i += 2
            continue
        if ch == "|":
            header.append(current)
            current = ""
        else:
            current += ch
        i += 1
    ext_text = cef[i:]
    ext: dict[str, str] = {}
    key = ""
    value = ""
    j = 0
    tokens: list[tuple[str, str]] = []
    # Keys are [A-Za-z0-9_]+ followed by an unescaped '='; values run to the next key.
    while j < len(ext_text):
        k = j
        while k < len(ext_text) and (ext_text[k].isalnum() or ext_text[k] == "_"):
            k += 1
        key = ext_text[j:k]
        assert ext_text[k] == "=", ext_text[j:]
        k += 1
        value = ""
        while k < len(ext_text):
            ch = ext_text[k]
            if ch == "\\":
                nxt = ext_text[k + 1]
                value += {"n": "\n", "r": "\r"}.get(nxt, nxt)
                k += 2
                continue
            if ch == " ":
                rest = ext_text[k + 1 :]
                m = 0
                while m < len(rest) and (rest[m].isalnum() or rest[m] == "_"):
                    m += 1
                if m and m < len(rest) and rest[m] == "=":
                    break
            value += ch
            k += 1
        tokens.append((key, value))
        j = k + 1
    ext = dict(tokens)
    return header, ext
