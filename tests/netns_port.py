"""One TCP port of this network namespace reachable inside another one the test made.

A sensor listening on a mirror port runs inside the mirror's namespace (tests/mirror.py), which
has a loopback of its own: the broker on 127.0.0.1 here is not there. This forwarder opens its
listening socket inside that namespace (``setns`` changes only the calling thread, and a socket
keeps the namespace it was made in) and relays each connection to the same address and port
here. Loopback only, on both sides.
"""

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000  # linux/sched.h


def _setns(fd: int) -> None:
    """``setns(2)`` (os.setns is Python 3.12's; this runs on 3.11 too)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _listener_inside(namespace: str, address: str, port: int) -> socket.socket:
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def make() -> None:
        # A thread of its own, which ends with it: this process's other threads stay here.
        try:
            with open(f"/run/netns/{namespace}") as target:
                _setns(target.fileno())
            made.append(socket.create_server((address, port)))
        except BaseException as exc:  # re-raised by the caller below
            failed.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass  # the other direction closed both sockets
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        source.close()  # each socket is the source of one pump: it closes it


@contextmanager
def port_inside(namespace: str, address: str, port: int) -> Iterator[None]:
    """``address:port`` (loopback) of this namespace, served at the same place in ``namespace``."""
    subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
    server = _listener_inside(namespace, address, port)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                inside, _ = server.accept()
            except OSError:
                return
            try:
                here = socket.create_connection((address, port))
            except OSError:
                inside.close()
                continue
            for a, b in ((inside, here), (here, inside)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone may not)
        server.close()
        acceptor.join()
