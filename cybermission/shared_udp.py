"""One UDP socket for a whole run's UDP sessions, answers and ICMP errors sent to their session.

A run probes every UDP port of every target: a socket (and an event-loop transport) per session
was the probe phase's largest cost after the store (issue 12: 14% of a 1,024-device run). One
unconnected socket per address family carries them all instead. What a connected socket gave for
free is kept:

- answers are handed to the session of their source (address, port), and dropped when no session
  waits for them (strangers never reach a probe);
- ICMP errors (port unreachable: "nothing here", the usual answer of an address) reach the
  session they concern: with ``IP_RECVERR`` the kernel queues each error with the destination of
  the datagram that caused it (ip(7)), read here from the socket's error queue.

Linux only (``IP_RECVERR``, ``MSG_ERRQUEUE``), like the sweep's epoll. A session that must follow
the port the device answers from (HART-IP) keeps a socket of its own (``cybermission.net``).
"""

import asyncio
import errno
import logging
import os
import socket
import struct
from collections import deque
from typing import Final, Protocol

logger = logging.getLogger(__name__)

# <linux/in.h> IP_RECVERR, <linux/in6.h> IPV6_RECVERR: not exported by Python's socket module.
_RECVERR: Final = {
    socket.AF_INET: (socket.IPPROTO_IP, 11),
    socket.AF_INET6: (socket.IPPROTO_IPV6, 25),
}
_RECEIVE_BUFFER_BYTES: Final = 4 << 20  # a run's answers arrive together: room for bursts
_MAX_DATAGRAM_BYTES: Final = 65535
_ERRQUEUE_ANCILLARY_BYTES: Final = 512
_READS_PER_WAKE: Final = 1024  # then the loop's other work; level-triggered, so it comes back
# struct sock_extended_err: the first field is the errno the ICMP message stands for.
_EE_ERRNO: Final = struct.Struct("I")
# Errors a send reports on an unconnected socket with IP_RECVERR: an earlier datagram's ICMP
# answer (its details wait in the error queue), not this send's failure. The send is retried.
_EARLIER_ERRORS: Final = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}
)


class Receiver(Protocol):
    """What a session gives the shared socket: where its answers and errors go."""

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None: ...

    def error_received(self, exc: Exception) -> None: ...


class SharedUdpSocket:
    """An unconnected UDP socket of one family whose datagrams go to registered receivers.

    ``shared=False`` makes one for a single session that must follow the port its device answers
    from (HART-IP): its own source port, default buffers, and a receiver registered for every
    port of one address (``register(address, None, ...)``). That session then gets its ICMP
    errors as the shared sessions do; on a plain unconnected socket the kernel reports none, so
    each HART-IP probe of an address where nothing listens waited out its whole timeout (issue
    12: 3.2 s of a 7.8 s lab run's wall time, the last hosts' HART-IP silences).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, family: socket.AddressFamily, *, shared: bool = True
    ) -> None:
        self._loop = loop
        self.family = family
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            level, option = _RECVERR[family]
            self._sock.setsockopt(level, option, 1)
            if shared:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER_BYTES)
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _RECEIVE_BUFFER_BYTES)
        except BaseException:
            self._sock.close()
            raise
        # Keyed by (address, port); (address, None) takes every port of the address, which only
        # a socket private to one session may hold (on a shared one it would take the late
        # answers of other sessions of that address).
        self._receivers: dict[tuple[str, int | None], Receiver] = {}
        self._unsent: deque[tuple[bytes, tuple[str, int]]] = deque()
        loop.add_reader(self._sock.fileno(), self._readable)

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def register(self, address: str, port: int | None, receiver: Receiver) -> bool:
        """Route what comes from (address, port) to ``receiver`` (port None: from any port of
        the address); False if another holds it."""
        key = (address, port)
        if key in self._receivers:
            return False
        self._receivers[key] = receiver
        return True

    def unregister(self, address: str, port: int | None) -> None:
        self._receivers.pop((address, port), None)

    def vacate(self, address: str) -> None:
        """A private socket's session with ``address`` ended, the socket stays open for another:
        nothing of that session is routed or sent any more (as if it had been closed)."""
        self._receivers.pop((address, None), None)
        if self._unsent:
            self._unsent.clear()
            self._loop.remove_writer(self._sock.fileno())

    def sendto(self, payload: bytes, destination: tuple[str, int]) -> None:
        """Send now, or as soon as the socket's buffer has room (order kept)."""
        if self._unsent:
            self._unsent.append((payload, destination))
            return
        if not self._send(payload, destination):
            self._unsent.append((payload, destination))
            self._loop.add_writer(self._sock.fileno(), self._writable)

    def close(self) -> None:
        fd = self._sock.fileno()
        if fd >= 0:
            self._loop.remove_reader(fd)
            if self._unsent:
                self._loop.remove_writer(fd)
        self._sock.close()
        self._receivers.clear()

    def _send(self, payload: bytes, destination: tuple[str, int]) -> bool:
        for _ in range(4):  # each pending ICMP error is reported once, by one send
            try:
                self._sock.sendto(payload, destination)
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno not in _EARLIER_ERRORS:
                    self._deliver_error(destination, exc)
                    return True
                continue
            return True
        return True  # errors kept coming: leave the datagram; its session times out honestly

    def _writable(self) -> None:
        while self._unsent:
            payload, destination = self._unsent[0]
            if not self._send(payload, destination):
                return
            self._unsent.popleft()
        self._loop.remove_writer(self._sock.fileno())

    def _readable(self) -> None:
        sock = self._sock
        for _ in range(_READS_PER_WAKE):
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM_BYTES)
            except BlockingIOError:
                break
            except OSError:
                # The pending error of an ICMP answer: its details are in the error queue.
                continue
            receiver = self._receiver(addr[0], addr[1])
            if receiver is not None:
                receiver.datagram_received(data, addr)
        self._read_errors()

    def _read_errors(self) -> None:
        for _ in range(_READS_PER_WAKE):
            try:
                _data, ancillary, _flags, addr = self._sock.recvmsg(
                    1, _ERRQUEUE_ANCILLARY_BYTES, socket.MSG_ERRQUEUE
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("udp error queue unreadable", extra={"error": str(exc)})
                return
            if not addr:
                continue
            for _level, _type, payload in ancillary:
                if len(payload) >= _EE_ERRNO.size:
                    code = _EE_ERRNO.unpack_from(payload)[0]
                    self._deliver_error((addr[0], addr[1]), OSError(code, os.strerror(code)))
                    break

    def _deliver_error(self, destination: tuple[str, int], exc: OSError) -> None:
        receiver = self._receiver(*destination)
        if receiver is not None:
            receiver.error_received(exc)

    def _receiver(self, address: str, port: int) -> Receiver | None:
        receiver = self._receivers.get((address, port))
        return receiver if receiver is not None else self._receivers.get((address, None))
