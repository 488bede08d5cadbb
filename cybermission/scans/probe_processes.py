"""The probing side of a scan over several processes, one event loop per core, for large ranges.

A scan's sweep and identification are Python work on one event loop, which holds one core: a
1,024-device lab run spent ~45% of its CPU probing and ~30% writing, both under one GIL (issue
12). Here each child expands the same target specs itself and keeps every N-th address (no
address list crosses a pipe, memory stays flat), sweeps and identifies it with the ordinary
:func:`~cybermission.scans.sweep_handoff.probe_hosts` and its share of the pacing, and streams the
swept hosts and the reports back in small pickled batches; this process keeps the store (counts,
writes, the report). The scope guard is rebuilt in each child from the same rules and still judges
every send there. A host is in exactly one child, so "one connection at a time per device" and
the per-host rate hold as in one process; the run's global limits are shared out.
"""

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import signal
from collections.abc import AsyncGenerator, Iterator, Sequence
from multiprocessing.connection import Connection

from cybermission.config import PacingSettings
from cybermission.errors import CybermissionError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.scans.probing import HostReport, ProbePlan
from cybermission.scans.sweep import HostResult, sweep
from cybermission.scans.sweep_handoff import probe_hosts
from cybermission.scans.targets import expand_targets

# Items per pickled message, and how often a child sends a partial batch.
ITEMS_PER_MESSAGE = 64
HOLD_S = 0.05
# Messages this process holds before it stops reading the children's pipes (backpressure).
MESSAGES_WAITING = 16
# A child per core only pays for itself above this many addresses each (fork, pickling).
MIN_HOSTS_PER_PROCESS = 256

Probed = HostResult | HostReport


def process_count(pacing: PacingSettings, hosts: int) -> int:
    """The processes a run of ``hosts`` addresses probes in: ``pacing.processes`` when set, else
    (0) one per core, as long as each gets ``MIN_HOSTS_PER_PROCESS`` addresses."""
    if pacing.processes:
        return pacing.processes
    return max(1, min(os.cpu_count() or 1, hosts // MIN_HOSTS_PER_PROCESS))


def share_of(pacing: PacingSettings, processes: int) -> PacingSettings:
    """Each child's pacing: global limits split evenly; per-host limits unchanged.

    The identification window is global too: it bounds what the devices (and a shared
    simulator) answer at once, and a wider one lost identities on a busy machine (lab runs:
    two children of 64 each lost a window of 128 hosts to timeouts at load 3.6).
    """
    effective = pacing.effective()
    return effective.model_copy(
        update={
            "global_rate_per_s": effective.global_rate_per_s / processes,
            "hosts_in_flight": max(1, effective.hosts_in_flight // processes),
            "sockets_in_flight": max(1, effective.sockets_in_flight // processes),
            "probes_in_flight": max(1, effective.probes_in_flight // processes),
        }
    )


def _unless(addresses: Iterator[str], skip: frozenset[str]) -> Iterator[str]:
    return (a for a in addresses if a not in skip) if skip else addresses


def _probed_here(
    specs: Sequence[str],
    ports: Sequence[int],
    *,
    guard: ScopeGuard,
    pacing: PacingSettings,
    plan: ProbePlan,
    skip: frozenset[str],
    share: tuple[int, int] = (0, 1),
) -> AsyncGenerator[Probed, None]:
    index, processes = share
    hosts = itertools.islice(
        _unless(expand_targets(specs, guard=guard), skip), index, None, processes
    )
    swept = sweep(hosts, ports, guard=guard, pacing=pacing)
    return probe_hosts(swept, plan=plan, guard=guard, pacing=pacing)


def _child(
    share: tuple[int, int],
    specs: Sequence[str],
    ports: Sequence[int],
    rules: Sequence[ScopeRule],
    pacing: PacingSettings,
    plan: ProbePlan,
    skip: frozenset[str],
    out: Connection,
) -> None:
    # Forked from a running event loop: its signal handlers' wake-up pipe is the parent's. A
    # signal here must not wake the parent as if it were the parent's (a stopped child would
    # read as a SIGTERM to the run); the parent alone decides when the run stops (Ctrl-C
    # reaches the whole process group) and terminates its children then.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    guard = ScopeGuard(rules)

    async def run() -> None:
        batch: list[Probed] = []

        def send() -> None:
            out.send(batch)  # pickled now: the list can be reused
            batch.clear()

        async def send_often() -> None:
            # A partial batch is not held while slow probes keep the next item away: the
            # parent's writer and progress wait on it.
            while True:
                await asyncio.sleep(HOLD_S)
                if batch:
                    send()

        sender = asyncio.create_task(send_often())
        try:
            async with contextlib.aclosing(
                _probed_here(
                    specs, ports, guard=guard, pacing=pacing, plan=plan, skip=skip, share=share
                )
            ) as probed:
                async for item in probed:
                    batch.append(item)
                    if len(batch) >= ITEMS_PER_MESSAGE:
                        send()
        finally:
            sender.cancel()
        send()

    try:
        asyncio.run(run())
        out.send(None)
    except CybermissionError as exc:
        out.send(exc)
    finally:
        out.close()


async def probe_specs(
    specs: Sequence[str],
    ports: Sequence[int],
    *,
    guard: ScopeGuard,
    pacing: PacingSettings,
    plan: ProbePlan,
    processes: int = 1,
    skip: frozenset[str] = frozenset(),
) -> AsyncGenerator[Probed, None]:
    """Sweep and identify every address of ``specs`` but those in ``skip`` (what a resumed run
    finished) over ``processes`` event loops, streaming each swept host, then its report.

    With one process this is :func:`probe_hosts` in this event loop.
    """
    if processes <= 1:
        async with contextlib.aclosing(
            _probed_here(specs, ports, guard=guard, pacing=pacing, plan=plan, skip=skip)
        ) as probed:
            async for item in probed:
                yield item
        return
    # Validate in the parent first: a refused spec fails here, before any child starts.
    expand_targets(specs, guard=guard)
    # fork: the children need nothing but these arguments (the probes are this process's own),
    # and start in milliseconds.
    context = multiprocessing.get_context("fork")
    share = share_of(pacing, processes)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[list[Probed] | BaseException | None] = asyncio.Queue()
    children = []
    readers: dict[int, Connection] = {}
    paused: set[int] = set()

    def deliver(fd: int) -> None:
        try:
            message = readers[fd].recv()
        except EOFError:
            # The child ended without its final message: it died (killed, out of memory).
            loop.remove_reader(fd)
            inbox.put_nowait(CybermissionError("a probe process ended unexpectedly"))
            return
        if message is None or isinstance(message, BaseException):
            loop.remove_reader(fd)
        elif inbox.qsize() >= MESSAGES_WAITING:
            # This process is behind (its writer): stop reading, so the pipe fills and the
            # child waits, rather than holding the run's reports here.
            loop.remove_reader(fd)
            paused.add(fd)
        inbox.put_nowait(message)

    for index in range(processes):
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(
            target=_child,
            args=((index, processes), list(specs), list(ports), guard.rules, share, plan, skip),
            kwargs={"out": writer},
            daemon=True,
        )
        child.start()
        writer.close()
        children.append(child)
        readers[reader.fileno()] = reader
        loop.add_reader(reader.fileno(), deliver, reader.fileno())
    finished = 0
    try:
        while finished < processes:
            message = await inbox.get()
            if paused and inbox.qsize() < MESSAGES_WAITING // 2:
                for fd in paused:
                    loop.add_reader(fd, deliver, fd)
                paused.clear()
            if message is None:
                finished += 1
            elif isinstance(message, BaseException):
                raise message
            else:
                for one in message:
                    yield one
    finally:
        for reader in readers.values():
            with contextlib.suppress(ValueError, OSError):  # already removed, or closed
                loop.remove_reader(reader.fileno())
            reader.close()
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join(timeout=5)
