"""Guarded network access: the only way probes and sweeps open sockets.

Every connect and every datagram goes through :class:`Connector`, which asks the scope guard right
before the packet would leave: once per TCP connection, and before *each* datagram of a
:class:`UdpSession` (one socket, one source port, answers only from the target, bounded).
Closing uses an immediate reset for sweeps (no TIME_WAIT pile-up) and a polite FIN for probes
that spoke to the device.
"""

import asyncio
import socket
import struct
from collections import deque
from typing import Any, Protocol

from cybermission.errors import ProbeTimeoutError
from cybermission.shared_udp import SharedUdpSocket

_LINGER_RESET = struct.pack("ii", 1, 0)
MAX_DATAGRAM_BYTES = 65535  # answers are cut to this (or the session's own bound)
MAX_QUEUED_DATAGRAMS = 16  # answers kept unread per session; more are dropped
MAX_IDLE_PRIVATE_SOCKETS = 256  # a run's port-following sockets kept for the next session
_ERROR_PORT = -1  # marks an ICMP error in the inbox


class Guard(Protocol):
    def check(self, address: str) -> object: ...


def reset_on_close(sock: socket.socket) -> None:
    """Make ``close()`` send RST instead of FIN: no TIME_WAIT on our side, nothing left open."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


class Pacer(Protocol):
    def contact_now(self, address: str) -> bool:
        """Book a contact if the pace allows one now without waiting; else False."""

    async def contact(self, address: str) -> None:
        """Wait until the pace allows a contact, and book it."""


class Connector:
    """Opens TCP streams and UDP exchanges to in-scope addresses only.

    With a ``pacer`` (the run's :class:`cybermission.device_pacing.DeviceGate`) every connect
    and every UDP session first waits for the device's per-host pace; the pace wait is never
    part of a timeout, and the guard judges the address after it, right before the packet.
    """

    def __init__(
        self, guard: Guard, *, pacer: Pacer | None = None, shared_udp: bool = False
    ) -> None:
        self.guard = guard
        self.pacer = pacer
        # One UDP socket per address family for every session (shared_udp.py); the owner of
        # such a connector closes it (``close``) when its run ends.
        self._shared_udp = shared_udp
        self._shared: dict[socket.AddressFamily, SharedUdpSocket] = {}
        # With ``shared_udp``, a port-following session's own socket outlives it, idle, for the
        # next such session (of another address): making one (socket, options, the loop's
        # reader) was a quarter of a run's UDP samples once the rest was cheap (issue 12).
        self._idle_private: dict[socket.AddressFamily, list[SharedUdpSocket]] = {}
        self._closed = False

    def close(self) -> None:
        """Close the run's shared UDP sockets (nothing to do without ``shared_udp``)."""
        self._closed = True
        for shared in self._shared.values():
            shared.close()
        self._shared.clear()
        for idle in self._idle_private.values():
            for private in idle:
                private.close()
        self._idle_private.clear()

    async def open_tcp(
        self, address: str, port: int, *, timeout_s: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect after the guard allowed it; raises ``ScopeError`` or ``ProbeTimeoutError``."""
        if self.pacer is not None:
            await self.pacer.contact(address)
        self.guard.check(address)
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.open_connection(address, port)
        except TimeoutError as exc:
            raise ProbeTimeoutError(f"{address}:{port} connect timed out") from exc

    async def exchange_udp(
        self, address: str, port: int, payload: bytes, *, timeout_s: float
    ) -> bytes:
        """Send one datagram to an in-scope address and wait for one answer (one session)."""
        # The session without its context object: most of a run's sessions are these, and most
        # end at once on "port unreachable" (issue 12: per-session overhead was the cost).
        session = await self._start_udp(address, port, False, MAX_DATAGRAM_BYTES)
        try:
            session.send(payload)
            return await session.receive(timeout_s=timeout_s)
        finally:
            session.close()

    def open_udp(
        self,
        address: str,
        port: int,
        *,
        follow_port: bool = False,
        max_datagram_bytes: int = MAX_DATAGRAM_BYTES,
    ) -> "_UdpOpening":
        """One UDP socket (one source port) for a whole exchange with an in-scope address.

        Used as ``async with connector.open_udp(...) as session``. The guard judges the address
        on entry and again before every datagram. Only answers from ``address`` are kept: from
        ``port`` itself, or with ``follow_port`` from any port of that address, later datagrams
        then going to the port that answered (HART-IP gateways answer a session from another
        port).
        """
        return _UdpOpening(self, address, port, follow_port, max_datagram_bytes)

    async def _start_udp(
        self, address: str, port: int, follow_port: bool, max_datagram_bytes: int
    ) -> "UdpSession":
        """Pace, guard, then a session on the run's shared socket, its own, or a connected one."""
        pacer = self.pacer
        if pacer is not None and not pacer.contact_now(address):
            await pacer.contact(address)
        self.guard.check(address)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        inbox = _Inbox(address, None if follow_port else port, max_datagram_bytes)
        if self._shared_udp and not follow_port:
            shared = self._shared.get(family)
            if shared is None:
                shared = self._shared[family] = SharedUdpSocket(loop, family)
            if shared.register(address, port, inbox):
                return UdpSession(
                    self.guard, _SharedSender(shared, address, port), inbox, address, port
                )
        if follow_port:
            # Following the port needs an unconnected socket, filtered by address: one of the
            # session's own (its own source port), which also reports ICMP errors.
            # A socket one session holds at a time; reused only with ``shared_udp`` (the owner
            # closes the run's sockets), its source port then serving one address after another
            # as the shared socket's does, answers and errors still filtered by address.
            idle = self._idle_private.get(family) if self._shared_udp else None
            private = idle.pop() if idle else SharedUdpSocket(loop, family, shared=False)
            private.register(address, None, inbox)
            return UdpSession(
                self.guard, _PrivateSender(self, private, address), inbox, address, port
            )
        # A connected socket lets the kernel report ICMP port unreachable and drop strangers.
        # The socket is made here, not by the loop from an address: the loop's path resolves and
        # walks address families per endpoint, a sixth of the probe phase's UDP cost.
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((address, port))
            transport, _ = await loop.create_datagram_endpoint(lambda: inbox, sock=sock)
        except BaseException:
            sock.close()
            raise
        return UdpSession(self.guard, transport, inbox, address, port, connected=True)


class _UdpOpening:
    """``open_udp``'s ``async with``: a plain class, where an ``@asynccontextmanager`` made an
    async generator and its wrapper for every session (issue 12: 84 of a run's 236 UDP samples
    were ``open_udp`` and that wrapper)."""

    __slots__ = (
        "_address",
        "_connector",
        "_follow_port",
        "_max_datagram_bytes",
        "_port",
        "_session",
    )

    def __init__(
        self,
        connector: Connector,
        address: str,
        port: int,
        follow_port: bool,
        max_datagram_bytes: int,
    ) -> None:
        self._connector = connector
        self._address = address
        self._port = port
        self._follow_port = follow_port
        self._max_datagram_bytes = max_datagram_bytes
        self._session: UdpSession | None = None

    async def __aenter__(self) -> "UdpSession":
        self._session = await self._connector._start_udp(
            self._address, self._port, self._follow_port, self._max_datagram_bytes
        )
        return self._session

    async def __aexit__(self, *_exc_info: object) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class _Sender(Protocol):
    """What a session sends through: an event-loop datagram transport or the shared socket."""

    def sendto(self, data: bytes, addr: tuple[str, int] | None = None, /) -> None: ...

    def get_extra_info(self, name: str, default: object = None, /) -> Any: ...

    def close(self) -> None: ...


class _SharedSender:
    """A session's view of the run's shared UDP socket, shaped as a datagram transport."""

    __slots__ = ("_address", "_port", "_shared")

    def __init__(self, shared: SharedUdpSocket, address: str, port: int) -> None:
        self._shared = shared
        self._address = address
        self._port = port

    def sendto(self, data: bytes, addr: tuple[str, int] | None = None, /) -> None:
        if addr is None:
            raise ValueError("the shared UDP socket is unconnected: name the destination")
        self._shared.sendto(data, addr)

    def get_extra_info(self, name: str, default: object = None, /) -> Any:
        return self._shared.local_address if name == "sockname" else default

    def close(self) -> None:
        """The session ends: its answers and errors are no longer routed to it."""
        self._shared.unregister(self._address, self._port)


class _PrivateSender(_SharedSender):
    """A port-following session's own socket (every port of one address is routed to it)."""

    __slots__ = ("_connector", "_open")

    def __init__(self, connector: Connector, private: SharedUdpSocket, address: str) -> None:
        super().__init__(private, address, 0)
        self._connector = connector
        self._open = True

    def sendto(self, data: bytes, addr: tuple[str, int] | None = None, /) -> None:
        if not self._open:  # its socket may serve another address now
            raise RuntimeError("the UDP session is closed")
        super().sendto(data, addr)

    def close(self) -> None:
        """The session ends: its socket is closed, or kept idle for the run's next one."""
        if not self._open:
            return
        self._open = False
        private = self._shared
        connector = self._connector
        idle = connector._idle_private.setdefault(private.family, [])
        if connector._shared_udp and not connector._closed and len(idle) < MAX_IDLE_PRIVATE_SOCKETS:
            private.vacate(self._address)
            idle.append(private)
        else:
            private.close()


class _Inbox(asyncio.DatagramProtocol):
    """Keeps at most ``MAX_QUEUED_DATAGRAMS`` answers from the target, each cut to the bound.

    A deque and one waiting future (``UdpSession.receive``) rather than an ``asyncio.Queue``
    under ``asyncio.timeout``: a run opens a session per UDP port per address and most wait out
    a silence, where the timeout's cancellation of the task was the largest part of a session's
    cost (issue 12).
    """

    __slots__ = ("address", "error", "max_datagram_bytes", "port", "queue", "waiter")

    def __init__(self, address: str, port: int | None, max_datagram_bytes: int) -> None:
        self.address = address
        self.port = port
        self.max_datagram_bytes = max_datagram_bytes
        self.queue: deque[tuple[bytes, int]] = deque()
        self.error: OSError | None = None
        self.waiter: asyncio.Future[bool] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if addr[0] != self.address or (self.port is not None and addr[1] != self.port):
            return
        self._put(data[: self.max_datagram_bytes], int(addr[1]))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.error = exc
            # Wake a pending receive: the error is its answer (ICMP port unreachable).
            self._put(b"", _ERROR_PORT)

    def _put(self, data: bytes, port: int) -> None:
        if len(self.queue) < MAX_QUEUED_DATAGRAMS:
            self.queue.append((data, port))
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(True)


def _expire(waiter: "asyncio.Future[bool]") -> None:
    if not waiter.done():
        waiter.set_result(False)


class UdpSession:
    """Datagrams to one in-scope address on one socket: guarded sends, filtered, bounded answers."""

    def __init__(
        self,
        guard: Guard,
        transport: _Sender,
        inbox: _Inbox,
        address: str,
        port: int,
        *,
        connected: bool = False,
    ) -> None:
        self._guard = guard
        self._transport = transport
        self._inbox = inbox
        self._connected = connected
        self.address = address
        self.port = port
        self.sent = 0

    @property
    def local_address(self) -> tuple[str, int]:
        """The local address and port every datagram of this session leaves from."""
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def send(self, payload: bytes) -> None:
        """Send one datagram after the guard judged the address again (scopes can change)."""
        self._guard.check(self.address)
        if self._connected:
            self._transport.sendto(payload)
        else:
            self._transport.sendto(payload, (self.address, self.port))
        self.sent += 1

    async def receive(self, *, timeout_s: float) -> bytes:
        """The next answer from the target; ``ProbeTimeoutError`` after ``timeout_s`` of silence.

        An ICMP error reported for this socket (port unreachable) is raised as the ``OSError``.
        """
        inbox = self._inbox
        if not inbox.queue:
            # One future and one timer, awaited here (no coroutine of its own per receive).
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[bool] = loop.create_future()
            inbox.waiter = waiter
            timer = loop.call_later(timeout_s, _expire, waiter)
            try:
                answered = await waiter
            finally:
                timer.cancel()
                inbox.waiter = None
            if not answered:
                raise ProbeTimeoutError(f"{self.address}:{self.port}/udp no answer")
        data, port = inbox.queue.popleft()
        if port == _ERROR_PORT and inbox.error is not None:
            error, inbox.error = inbox.error, None
            raise error
        self.port = port
        return data

    def close(self) -> None:
        """End the session: its socket closed, or its share of the run's socket given back."""
        self._transport.close()


async def close_politely(writer: asyncio.StreamWriter, *, timeout_s: float = 1.0) -> None:
    """FIN and wait briefly for the peer: devices with few connection slots free theirs at once."""
    writer.close()
    try:
        async with asyncio.timeout(timeout_s):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        return
