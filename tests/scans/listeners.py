"""Listening TCP sockets on loopback addresses: what a sweep finds open (the kernel completes
each handshake; nothing is ever accepted or answered)."""

import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


@contextmanager
def listeners_on(pairs: Iterable[tuple[str, int]]) -> Iterator[None]:
    sockets = []
    try:
        for address, port in pairs:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(16)
            sockets.append(sock)
        yield
    finally:
        for sock in sockets:
            sock.close()
