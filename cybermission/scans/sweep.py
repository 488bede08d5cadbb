"""Asyncio TCP connect sweep: which ports of which hosts accept a connection, paced and guarded.

Engine shape (see ../shared/BENCHMARKS.md): a fixed pool of worker tasks, one host per worker at a
time, each probe a non-blocking socket whose connect completion the event loop reports (what
``loop.sock_connect`` does, made leaner: see :class:`_Completions`), closed with an immediate reset
(SO_LINGER 0: no TIME_WAIT, nothing left half-open on the device). A task per probe behind a
semaphore measured 2 to 4 times slower.

Safety (DESIGN.md §2):

* the scope guard is asked right before *every* connect, so a scope revoked mid-run stops the run;
  a refused host is reported (``HostResult.errors`` starts with ``"scope: "``), never connected;
* pacing: a global rate and a per-host rate (GCRA token buckets), a cap on hosts in flight (the
  worker count) and a cap on sockets in flight;
* one connection attempt at a time per host while the host is answering.

``sweep`` applies ``pacing.effective()`` itself (idempotent: an already effective profile is kept).
"""

import asyncio
import errno
import logging
import os
import select
import socket
import struct
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from cybermission.config import PacingSettings
from cybermission.device_pacing import Pace
from cybermission.errors import ScopeError, ValidationError
from cybermission.net import Guard

logger = logging.getLogger(__name__)

_LINGER_RESET: Final = struct.pack("ii", 1, 0)
_EPOLL_CONNECTED: Final = select.EPOLLOUT | select.EPOLLONESHOT
_EPOLL_BATCH: Final = 1024  # events read per epoll_wait (Python's own default is 1023)
# Unreachable answers (ICMP) and kernel-side timeouts: nothing listened, nothing refused.
_FILTERED_ERRNOS: Final = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ETIMEDOUT}
)
# Something at the address answered the SYN with a reset.
_CLOSED_ERRNOS: Final = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED})
SCOPE_ERROR_PREFIX: Final = "scope: "


class PortState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"  # timed out or unreachable


@dataclass(frozen=True, slots=True)
class HostResult:
    """What one host answered. ``errors`` holds ``"<port>: <reason>"`` or ``"scope: <reason>"``."""

    address: str
    open_ports: tuple[int, ...]
    closed: int
    filtered: int
    errors: tuple[str, ...]
    # When the host's pace allows the next contact (``time.monotonic``, system-wide on Linux, so
    # valid across probe processes): the probe phase resumes the same per-host pace from here.
    next_contact_at: float = field(default=0.0, compare=False)

    @property
    def scope_refused(self) -> bool:
        """The guard refused the host: nothing was sent to it (no more, if revoked mid-host)."""
        return any(e.startswith(SCOPE_ERROR_PREFIX) for e in self.errors)


def _check_ports(ports: Sequence[int]) -> tuple[int, ...]:
    if isinstance(ports, str | bytes) or not ports:
        raise ValidationError("ports: expected a non-empty list of TCP ports")
    seen: dict[int, None] = {}
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValidationError(f"ports: {port!r} is not a TCP port (1-65535)")
        seen.setdefault(port, None)
    return tuple(seen)


async def sweep(
    hosts: Iterable[str], ports: Sequence[int], *, guard: Guard, pacing: PacingSettings
) -> AsyncGenerator[HostResult, None]:
    """Connect-scan ``ports`` on every host, yielding each host's result as soon as it is done.

    ``hosts`` is consumed lazily (only as workers free up) and results wait in a bounded queue, so
    memory does not grow with the range. Each host should appear once (``expand_targets`` merges
    duplicates); a host already in flight when it appears again is reported as a duplicate.
    Closing the generator early (``aclose``) cancels the workers and closes their sockets.
    """
    engine = _Sweep(guard, _check_ports(ports), pacing.effective())
    # aclosing: an early exit must stop the workers now, not whenever the inner generator is
    # garbage collected.
    async with aclosing(engine.run(iter(hosts))) as results:
        async for result in results:
            yield result


class _Sweep:
    def __init__(self, guard: Guard, ports: tuple[int, ...], pacing: PacingSettings) -> None:
        self._guard = guard
        self._ports = ports
        self._host_rate = pacing.per_host_rate_per_s
        # Up to 20 ms worth of probes may leave back to back: smooth, yet no timer per probe.
        self._global = Pace(pacing.global_rate_per_s, max(1.0, pacing.global_rate_per_s / 50))
        self._sockets = _Slots(pacing.sockets_in_flight)
        self._deadlines = _Deadlines(pacing.connect_timeout_s)
        self._loop = asyncio.get_running_loop()
        self._completions = _Completions(self._loop)
        self._workers = max(1, min(pacing.hosts_in_flight, pacing.sockets_in_flight))
        self._busy: set[str] = set()

    async def run(self, hosts: Iterator[str]) -> AsyncGenerator[HostResult, None]:
        # Bounded: a slow consumer holds the workers, and they stop pulling hosts.
        queue: asyncio.Queue[HostResult | BaseException | None] = asyncio.Queue(self._workers)
        tasks = [asyncio.create_task(self._worker(hosts, queue)) for _ in range(self._workers)]
        reaper = asyncio.create_task(self._deadlines.run(self._completions.settle))
        try:
            running = len(tasks)
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in (*tasks, reaper):
                task.cancel()
            await asyncio.gather(*tasks, reaper, return_exceptions=True)
            self._completions.close()

    async def _worker(
        self, hosts: Iterator[str], queue: "asyncio.Queue[HostResult | BaseException | None]"
    ) -> None:
        try:
            for address in hosts:  # shared iterator: each worker pulls the next host when free
                if address in self._busy:
                    await queue.put(
                        HostResult(address, (), 0, 0, ("*: duplicate target, already in flight",))
                    )
                    continue
                self._busy.add(address)
                try:
                    result = await self._host(address)
                finally:
                    self._busy.discard(address)
                await queue.put(result)
        # A broken host iterator (or a bug): hand it to the consumer rather than lose it in a task.
        except Exception as exc:  # noqa: BLE001
            await queue.put(exc)
        await queue.put(None)

    async def _host(self, address: str) -> HostResult:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        pace = Pace(self._host_rate, 1.0)
        opened: list[int] = []
        errors: list[str] = []
        closed = filtered = 0
        ports = self._ports
        for index, port in enumerate(ports):
            try:
                state = await self._probe(address, family, port, pace)
            except ScopeError as exc:
                errors.append(SCOPE_ERROR_PREFIX + str(exc))
                break
            except OSError as exc:
                errors.append(_describe(port, exc))
                continue
            if state is PortState.OPEN:
                opened.append(port)
            elif state is PortState.CLOSED:
                closed += 1
            else:
                filtered += 1
                if index == 0 and len(ports) > 1:
                    # The host's first probe got no answer at all: it is silent (absent or behind
                    # a drop filter). No handshake can complete with a silent host, so trying its
                    # other ports at once cannot load a device; if one does complete after all,
                    # it is reset on the spot like every probe. Waiting one timeout per port
                    # instead would make sparse ranges (mostly silent) ports x slower. A host
                    # that answered anything is never probed with two attempts at once.
                    outcomes = await asyncio.gather(
                        *(self._probe(address, family, p, pace) for p in ports[1:]),
                        return_exceptions=True,
                    )
                    for other, outcome in zip(ports[1:], outcomes, strict=True):
                        if outcome is PortState.OPEN:
                            opened.append(other)
                        elif outcome is PortState.CLOSED:
                            closed += 1
                        elif outcome is PortState.FILTERED:
                            filtered += 1
                        elif isinstance(outcome, ScopeError):
                            errors.append(SCOPE_ERROR_PREFIX + str(outcome))
                        elif isinstance(outcome, OSError):
                            errors.append(_describe(other, outcome))
                        elif isinstance(outcome, BaseException):
                            raise outcome
                    break
        if errors:
            logger.warning("sweep host errors", extra={"address": address, "errors": errors})
        return HostResult(
            address, tuple(sorted(opened)), closed, filtered, tuple(errors), pace.next_at
        )

    async def _probe(self, address: str, family: int, port: int, pace: Pace) -> PortState:
        loop = self._loop
        slots = self._sockets
        if slots.free > 0:
            slots.free -= 1
        else:
            await slots.take()
        try:
            # Pacing last, so nothing can wait between the booked send time and the SYN.
            now = loop.time()
            glob = self._global
            if not (glob.ready(now) and pace.ready(now)):
                # In line: first for the host's pace (a silent host's ports go together), then,
                # holding it, for the global one. One wake-up per send, not one per worker.
                await pace.hold(loop.time)
                try:
                    now = await glob.hold(loop.time)
                except BaseException:
                    pace.leave()
                    raise
            glob.take(now)
            pace.take(now)
            # Send-time scope enforcement: after any pacing wait, right before the SYN.
            self._guard.check(address)
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                err = sock.connect_ex((address, port))
                if err == errno.EINPROGRESS:  # always, even on loopback: wait for the answer
                    fd = sock.fileno()
                    done = self._completions.watch(fd)
                    bucket = self._deadlines.watch(done, loop.time())
                    try:
                        timed_out = await done
                    finally:
                        self._completions.forget(fd)
                        del bucket[done]
                    if timed_out:
                        return PortState.FILTERED
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            finally:
                sock.close()
        finally:
            slots.give()
        if err == 0:
            return PortState.OPEN
        if err in _CLOSED_ERRNOS:
            return PortState.CLOSED
        if err in _FILTERED_ERRNOS:
            return PortState.FILTERED
        raise OSError(err, os.strerror(err))


class _Completions:
    """Connect completions through an epoll instance of our own, which the event loop watches.

    Measured on the dense workload (bench/README.md): ``loop.sock_connect`` under
    ``asyncio.timeout`` ran at 14.7k connects/s (the timer heap was the top cost); waiting through
    ``loop.add_writer`` with shared deadline buckets at 30.1k/s; this at 41.8k/s. Each wait is one
    ``epoll_ctl`` (one-shot, dropped by the kernel when the socket closes) and a dict entry,
    instead of a selector key, a handle and two ``epoll_ctl``. Linux only (epoll), like the
    product's deployment targets.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        loop.add_reader(self._epoll.fileno(), self.settle)

    def watch(self, fd: int) -> "asyncio.Future[bool]":
        """A future set to ``False`` once the connect on ``fd`` completed (or failed)."""
        done = self._loop.create_future()
        self._epoll.register(fd, _EPOLL_CONNECTED)
        self._waiting[fd] = done
        return done

    def forget(self, fd: int) -> None:
        """Call right before the socket closes; closing takes it out of the epoll set."""
        # Its number may come back for the next socket at once: no stale future may stay.
        self._waiting.pop(fd, None)

    def close(self) -> None:
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()

    def settle(self) -> None:
        """Resolve every connect whose completion the kernel reported (the loop's reader).

        One ``poll`` returns at most ``_EPOLL_BATCH`` events, so it is repeated until the kernel
        holds no more: the deadline sweep calls this right before it calls connects unanswered,
        and a late loop on a busy machine can have thousands of completions waiting (reading only
        the first batch called the rest "filtered": 415 of 420 open ports under stress-ng).
        """
        waiting = self._waiting
        while True:
            events = self._epoll.poll(0, _EPOLL_BATCH)
            for fd, _events in events:
                done = waiting.get(fd)
                if done is not None and not done.done():
                    done.set_result(False)
            if len(events) < _EPOLL_BATCH:
                return


class _Slots:
    """A counting limit for sockets in flight whose uncontended path is two integer operations."""

    def __init__(self, count: int) -> None:
        self.free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        while self.free <= 0:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # hand the wake-up we were given to the next in line
                raise
        self.free -= 1

    def give(self) -> None:
        self.free += 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


# The connects of one deadline bucket still waiting for an answer (a dict: O(1) removal).
_Bucket = dict["asyncio.Future[bool]", None]


class _Deadlines:
    """Connect timeouts in coarse buckets: one dict insert per connect, one sweep per tick.

    A bucket takes the connects started during one tick and expires ``timeout_s`` after that tick
    ends, so a connect times out between ``timeout_s`` and ``timeout_s`` plus a tick (a twentieth
    of the timeout) plus the loop's lateness after it started; never earlier.

    A connect leaves its bucket as soon as it is answered (the caller deletes it from the bucket
    :meth:`watch` returned): a busy loop is late at every tick and so pushes every deadline back
    again and again, and buckets that kept answered connects until then grew with the range
    (issue 12: ~150 bytes per address, a /16's peak RSS 1.11 x a /20's).
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.tick_s = max(timeout_s / 20, 0.002)
        self._current: _Bucket = {}
        self._current_end = float("-inf")
        self._buckets: deque[tuple[float, _Bucket]] = deque()

    def watch(self, done: "asyncio.Future[bool]", now: float) -> _Bucket:
        """Time ``done`` out unless answered; the bucket returned is where to delete it from."""
        if now >= self._current_end:
            self._current = {}
            self._current_end = now + self.tick_s
            self._buckets.append((self._current_end + self.timeout_s, self._current))
        self._current[done] = None
        return self._current

    async def run(self, settle: Callable[[], None]) -> None:
        """Expire buckets; ``settle`` first reads completions the kernel already reported.

        A busy machine wakes this task late. What happened meanwhile is checked before any
        connect is called unanswered: ``settle`` reads every completion the kernel holds (the
        loop may not have read them yet), and the time the loop was late beyond a tick is added
        to every pending deadline, so a connect is given ``timeout_s`` of a running loop.
        """
        loop = asyncio.get_running_loop()
        buckets = self._buckets
        expected = loop.time() + self.tick_s
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            late = now - expected
            expected = now + self.tick_s
            if late > self.tick_s:
                for index, (deadline, futures) in enumerate(buckets):
                    buckets[index] = (deadline + late, futures)
            if not buckets or buckets[0][0] > now:
                continue
            settle()
            while buckets and buckets[0][0] <= now:
                # A copy: each waiter deletes itself from the bucket once it runs.
                for done in tuple(buckets.popleft()[1]):
                    if not done.done():
                        done.set_result(True)


def _describe(port: int, exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno or 0, "OSError")
    return f"{port}: {code}: {exc.strerror or os.strerror(exc.errno or 0)}"
