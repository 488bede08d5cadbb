"""A TCP relay on loopback that a test can cut: the store "goes away" (connections reset, new
ones refused) and comes back on the same port, as a PostgreSQL restart or a network cut looks to
the service."""

import contextlib
import socket
import struct
import threading
from types import TracebackType


class TcpRelay:
    """Relays ``127.0.0.1:<port>`` to ``upstream``; :meth:`cut` resets every connection and
    refuses new ones, :meth:`restore` listens again on the same port. :meth:`stall` stops
    forwarding without resetting anything (a half-open link: the relay's kernel still accepts and
    acknowledges, nothing answers), :meth:`flow` forwards again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()

    def __enter__(self) -> "TcpRelay":
        self.restore()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cut()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stall(self) -> None:
        """Forward nothing more, either way, on any connection (new ones are still accepted)."""
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            # SO_LINGER 0: a reset, as a dead server or a cut link gives, not a polite close.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # close() alone does not wake a pump thread blocked in recv() on this socket: that
            # call keeps the kernel's socket alive, so no reset left and a client waiting for an
            # answer waited for ever (the spool fault test hung in CI after the store came back).
            # shutdown(SHUT_RD) wakes it and sends nothing; the reset leaves when it lets go.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            sock.close()
        self._flowing.set()  # pumps held by a stall find their sockets closed, and end

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
