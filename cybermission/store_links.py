"""PostgreSQL connections that cannot hang a run: libpq's timeouts and keepalives on every
connection, and a deadline on a unit of store work that gives up a connection gone silent.

A connection can be left half-open: the server's host died, a link or a firewall dropped it
without a reset, a proxy in between stopped forwarding. Nothing then answers and nothing fails;
a client waiting for a reply waits for ever (issue 10: a scan "hung for ever" mid-write). Two
layers, both from :class:`~cybermission.config.StoreSettings`:

- libpq options on every connection (:func:`connect_args`): ``connect_timeout``, TCP keepalives
  (an idle connection whose peer vanished is dropped after idle + interval x count seconds) and
  ``tcp_user_timeout`` (data sent and not acknowledged for that long drops it, instead of
  retransmitting for about 15 minutes).
- :func:`store_deadline` around one unit of work (creating a run, a batch of its results, a
  heartbeat, the run's end, the service runner's end of a run the pipeline could not close,
  reaping orphaned runs at start-up and in ``serve``, reopening a run to resume it, cancelling
  one and each poll while waiting for it to end, each unit of a scheduler tick, taking, checking
  and releasing a process lock (:func:`bound_held`), a site sensor's results part or traffic
  batch, an API request until its response starts: ``api/request_deadline.py``): a connection
  that has not answered within ``stall_s``, its pre-ping included, has its socket shut down
  by the process's one watchdog thread. The waiting call then fails as a lost connection does
  (a transient error: retried, then spooled), never hangs. This also catches what TCP cannot
  see: a peer whose kernel still acknowledges but whose server (or relay) no longer answers.

The pre-ping is done here (a pool ``checkout`` listener, SQLAlchemy's documented custom form of
``pool_pre_ping``) so that the connection is known to the unit's deadline before it is pinged.
SQLite has no connection to lose: none of this applies to it.
"""

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from cybermission.config import StoreSettings

logger = logging.getLogger(__name__)

# Engines with a stall deadline (PostgreSQL ones), and the deadline each gives a unit of work.
_stall_s: "weakref.WeakKeyDictionary[Engine, float]" = weakref.WeakKeyDictionary()
# The unit of work under way. A context variable, not a thread's: a unit begun in an event loop's
# task (an HTTP request, api/request_deadline.py) covers the threads it hands work to, which run
# in a copy of its context (asyncio.to_thread, Starlette's thread pool).
_current: "ContextVar[_Deadline | None]" = ContextVar("store_deadline", default=None)


def connect_args(settings: StoreSettings) -> dict[str, Any]:
    """libpq connection options (``psycopg.connect`` keywords) from the settings."""
    args: dict[str, Any] = {
        "connect_timeout": settings.connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": settings.keepalives_idle_s,
        "keepalives_interval": settings.keepalives_interval_s,
        "keepalives_count": settings.keepalives_count,
    }
    if settings.tcp_user_timeout_s > 0:
        args["tcp_user_timeout"] = int(settings.tcp_user_timeout_s * 1000)  # milliseconds
    return args


class _Deadline:
    """The connections one unit of work used, cut together when its time is up."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.expired = False
        self.ended = False
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        _watchdog.watch(self)

    def end(self) -> None:
        """No more bound: the watch stops, the connections are forgotten, later ones ignored."""
        with self._lock:
            if self.ended:
                return
            self.ended = True
            self._connections.clear()
        _watchdog.forget()

    def register(self, dbapi_connection: Any) -> None:
        with self._lock:
            if self.ended:
                return
            self._connections.append(dbapi_connection)
            expired = self.expired
        if expired:  # a reconnection attempt after the deadline: given up at once
            _shut_down(dbapi_connection)

    def fire(self) -> None:
        with self._lock:
            if self.ended:
                return
            self.expired = True
            connections = list(self._connections)
        logger.warning(
            "store did not answer: connection given up",
            extra={"work": self.what, "after_s": self.seconds, "connections": len(connections)},
        )
        for connection in connections:
            _shut_down(connection)


class _Watchdog:
    """One thread that fires every unit of work's deadline in this process, soonest first.

    A ``threading.Timer`` per unit started and stopped a thread for each API request and each
    scan batch (~170 us of CPU per request on PostgreSQL); this thread is started once, on the
    first deadline, and sleeps until the soonest one. Ended deadlines are dropped lazily: when
    they reach the head of the heap, or all at once when they are most of it (a deadline is
    ``stall_s``, minutes, and a busy API ends thousands of units meanwhile).
    """

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()  # ties broken by arrival, never by comparing deadlines
        self._ended = 0  # ended deadlines still in the heap
        self._thread: threading.Thread | None = None

    def watch(self, deadline: _Deadline) -> None:
        due = time.monotonic() + deadline.seconds
        with self._wake:
            heapq.heappush(self._heap, (due, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="store-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._wake.notify()  # sooner than what the thread sleeps for

    def forget(self) -> None:
        with self._wake:
            self._ended += 1
            if self._ended > 64 and self._ended * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].ended]
                heapq.heapify(self._heap)
                self._ended = 0

    def _run(self) -> None:
        while True:
            with self._wake:
                deadline = self._next_due()
            deadline.fire()  # outside the lock: it logs and shuts sockets down

    def _next_due(self) -> _Deadline:
        """Wait (holding the condition) for the soonest deadline still running to be due."""
        while True:
            while self._heap and self._heap[0][2].ended:
                heapq.heappop(self._heap)
                self._ended = max(0, self._ended - 1)
            if not self._heap:
                self._wake.wait()
                continue
            due, _, deadline = self._heap[0]
            delay = due - time.monotonic()
            if delay <= 0:
                heapq.heappop(self._heap)
                return deadline
            self._wake.wait(delay)


_watchdog = _Watchdog()


def _new_watchdog_in_child() -> None:
    # A forked child has no watchdog thread (and may hold a copy of a lock taken at the fork).
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog_in_child)


def _shut_down(dbapi_connection: Any) -> None:
    """Shut the connection's socket down (both ways): a thread waiting on it wakes with an error
    (the server "closed the connection"), and the pool then discards it. The socket itself
    stays the driver's (a duplicate descriptor is shut down and closed)."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:
        return
    with contextlib.suppress(Exception):
        descriptor = os.dup(pgconn.socket)
        with socket.socket(fileno=descriptor) as sock:
            sock.shutdown(socket.SHUT_RDWR)


def _no_deadline() -> None:
    return None


@contextmanager
def store_deadline(engine: Engine, what: str) -> Iterator[Callable[[], None]]:
    """Run the block (one unit of store work, in this thread or this task and the threads it
    hands work to) with the engine's stall deadline: a connection it checks out that has not
    answered within ``stall_s`` of the block's start is shut down and the waiting call fails
    as a lost connection. A no-op for SQLite.

    Yields a function that ends the deadline before the block does: store work after it is not
    bounded (an HTTP response's body, streamed once its head has been sent).
    """
    seconds = _stall_s.get(engine)
    if seconds is None:
        yield _no_deadline
        return
    deadline = _Deadline(seconds, what)
    token = _current.set(deadline)
    deadline.start()
    try:
        yield deadline.end
    finally:
        deadline.end()
        _current.reset(token)


def bound_held(connection: Connection) -> None:
    """Put a connection checked out before the current unit of work began (a session lock's,
    held as long as the lock) under that unit's deadline: the pool registers the connections a
    unit checks out, and a held one is not checked out again. A no-op outside a unit."""
    deadline = _current.get()
    if deadline is not None and not connection.closed:
        deadline.register(connection.connection.dbapi_connection)


def bound_connections(engine: Engine, settings: StoreSettings) -> None:
    """Give a PostgreSQL engine (built with :func:`connect_args`, without ``pool_pre_ping``) its
    pre-ping and the stall deadline of :func:`store_deadline`."""
    _stall_s[engine] = settings.stall_s

    @event.listens_for(engine, "connect")
    def fresh(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["fresh"] = True

    @event.listens_for(engine, "checkout")
    def ping(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        deadline = _current.get()
        if deadline is not None:
            deadline.register(dbapi_connection)
        if record.info.pop("fresh", False):
            return  # just connected: nothing to ping
        try:
            # The dialect's own ping (psycopg: in autocommit, leaving no transaction open).
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out a new one (a few attempts).
            raise DisconnectionError(f"pre-ping failed: {exc.__class__.__name__}") from exc
