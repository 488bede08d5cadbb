"""Scripted loopback devices for protocols without a usable PyPI simulator: replay recorded answers.

A :class:`ReplayDevice` listens on TCP or UDP, cuts what it receives into protocol frames with its
``splitter``, names each frame with its ``classify`` (the device's own decoding, independent of the
probe: the read-only proof of the tests) and answers with its ``responder``, which returns recorded
or encoded answer bytes, ``None`` for silence, or :data:`CLOSE` to drop the connection. The
misfit kinds (silent, garbage, closing) behave the same whatever the protocol.

Bounded: at most ``MAX_CONNECTIONS`` connections at once, ``MAX_BUFFER_BYTES`` buffered per
connection, ``MAX_LOG`` requests kept in the log.
"""

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from cybermission.probes import JSONValue

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 16
MAX_BUFFER_BYTES = 65536
MAX_LOG = 1024
CLOSE = b"\x00close\x00"  # sentinel a responder returns to drop the connection

# Length of the first complete frame at the start of the buffer, or None while incomplete.
Splitter = Callable[[bytes], int | None]
# (request frame, per-connection state) -> answer bytes, None (no answer) or CLOSE.
Responder = Callable[[bytes, dict[str, Any]], bytes | None]


class ReplayKind(StrEnum):
    """How a replay device behaves."""

    SCRIPTED = "scripted"  # answers with its responder
    SILENT = "silent"  # reads and never answers
    CLOSING = "closing"  # accepts TCP and closes at once
    GARBAGE = "garbage"  # answers every frame with random bytes


def whole_datagram(buffer: bytes) -> int | None:
    """Splitter for protocols where one read is one request (UDP, or short TCP exchanges)."""
    return len(buffer) or None


@dataclass(eq=False)
class ReplayDevice:
    """A scripted device on ``address:port``; ``requests`` logs the name of every frame received."""

    name: str
    address: str
    port: int
    protocol: str
    identity: dict[str, JSONValue]
    responder: Responder
    classify: Callable[[bytes], str]
    splitter: Splitter = whole_datagram
    transport: str = "tcp"
    kind: ReplayKind = ReplayKind.SCRIPTED
    requests: list[str] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)  # UDP: who sent each request
    connections: int = 0
    bytes_received: int = 0
    responses_sent: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _udp: asyncio.DatagramTransport | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, JSONValue]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
            "kind": self.kind.value,
            "identity": self.identity,
        }

    def clear_log(self) -> None:
        self.requests.clear()
        self.sources.clear()
        self.connections = self.bytes_received = self.responses_sent = 0

    async def start(self) -> None:
        """Listen; raises ``OSError`` when the address cannot be bound."""
        if self.transport == "udp":
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self.address, self.port)
            )
        else:
            self._server = await asyncio.start_server(self._serve, self.address, self.port)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await self._server.wait_closed()
            self._server = None

    def answer(self, frame: bytes, state: dict[str, Any]) -> bytes | None:
        """Log ``frame`` and produce what this device sends back."""
        if len(self.requests) < MAX_LOG:
            self.requests.append(self.classify(frame))
        if self.kind is ReplayKind.SILENT:
            return None
        if self.kind is ReplayKind.GARBAGE:
            rng: random.Random = state.setdefault("rng", random.Random(self.name))  # noqa: S311
            return bytes((0xA5, 0x5A)) + rng.randbytes(46)
        return self.responder(frame, state)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= MAX_CONNECTIONS:
            writer.close()
            return
        self.connections += 1
        self._tasks.add(task)
        state: dict[str, Any] = {}
        buffer = b""
        try:
            if self.kind is ReplayKind.CLOSING:
                return
            while data := await reader.read(4096):
                self.bytes_received += len(data)
                buffer += data
                if len(buffer) > MAX_BUFFER_BYTES:
                    return
                while (size := self.splitter(buffer)) is not None and size <= len(buffer):
                    frame, buffer = buffer[:size], buffer[size:]
                    reply = self.answer(frame, state)
                    if reply is CLOSE or reply == CLOSE:
                        return
                    if reply:
                        self.responses_sent += 1
                        writer.write(reply)
                        await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


class _Datagrams(asyncio.DatagramProtocol):
    """One request per datagram; the answer goes back to the sender."""

    def __init__(self, device: ReplayDevice) -> None:
        self.device = device
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        device = self.device
        device.bytes_received += len(data)
        if len(device.sources) < MAX_LOG:
            device.sources.append((str(addr[0]), int(addr[1])))
        if device.kind is ReplayKind.CLOSING:
            return
        reply = device.answer(data, {})
        if reply and reply != CLOSE and self.transport is not None:
            device.responses_sent += 1
            self.transport.sendto(reply, addr)
