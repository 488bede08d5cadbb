"""Guarded network access: the only way probes and sweeps open sockets.

Every connect and every datagram goes through :class:`Connector`, which asks the scope guard right
before the packet would leave. Closing uses an immediate reset for sweeps (no TIME_WAIT pile-up)
and a polite FIN for probes that spoke to the device.
"""

import asyncio
import socket
import struct
from typing import Protocol

from cybermission.errors import ProbeTimeoutError

_LINGER_RESET = struct.pack("ii", 1, 0)


class Guard(Protocol):
    def check(self, address: str) -> object: ...


def reset_on_close(sock: socket.socket) -> None:
    """Make ``close()`` send RST instead of FIN: no TIME_WAIT on our side, nothing left open."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


class Connector:
    """Opens TCP streams and UDP exchanges to in-scope addresses only."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def open_tcp(
        self, address: str, port: int, *, timeout_s: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect after the guard allowed it; raises ``ScopeError`` or ``ProbeTimeoutError``."""
        self.guard.check(address)
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.open_connection(address, port)
        except TimeoutError as exc:
            raise ProbeTimeoutError(f"{address}:{port} connect timed out") from exc

    async def exchange_udp(
        self, address: str, port: int, payload: bytes, *, timeout_s: float
    ) -> bytes:
        """Send one datagram to an in-scope address and wait for one answer."""
        self.guard.check(address)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        answer: asyncio.Future[bytes] = loop.create_future()

        class _Once(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                if not answer.done():
                    answer.set_result(data)

            def error_received(self, exc: Exception) -> None:
                if not answer.done():
                    answer.set_exception(exc)

        transport, _ = await loop.create_datagram_endpoint(
            _Once, remote_addr=(address, port), family=family
        )
        try:
            transport.sendto(payload)
            async with asyncio.timeout(timeout_s):
                return await answer
        except TimeoutError as exc:
            raise ProbeTimeoutError(f"{address}:{port}/udp no answer") from exc
        finally:
            transport.close()


async def close_politely(writer: asyncio.StreamWriter, *, timeout_s: float = 1.0) -> None:
    """FIN and wait briefly for the peer: devices with few connection slots free theirs at once."""
    writer.close()
    try:
        async with asyncio.timeout(timeout_s):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        return
