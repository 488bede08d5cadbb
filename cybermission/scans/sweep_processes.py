"""The connect sweep over several processes, one event loop per core, for large ranges.

One event loop saturates one core near 45k connects/s; a /16 at lab pacing wants both cores.
Each child expands the same target specs itself and keeps every N-th address (no address list
crosses a pipe, memory stays flat), sweeps it with the ordinary :func:`sweep` and its share of the
pacing, and streams results back in small pickled batches. The scope guard is rebuilt in each
child from the same rules and still judges every connect there. A host is in exactly one child,
so "one connection at a time per device" and the per-host rate hold as in one process.
"""

import asyncio
import contextlib
import itertools
import multiprocessing
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from multiprocessing.connection import Connection

from cybermission.config import PacingSettings
from cybermission.errors import CybermissionError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.scans.sweep import HostResult, sweep
from cybermission.scans.targets import expand_targets

RESULTS_PER_MESSAGE = 64


def share_of(pacing: PacingSettings, processes: int) -> PacingSettings:
    """Each child's pacing: global limits split evenly; per-host limits unchanged."""
    effective = pacing.effective()
    return effective.model_copy(
        update={
            "global_rate_per_s": effective.global_rate_per_s / processes,
            "hosts_in_flight": max(1, effective.hosts_in_flight // processes),
            "sockets_in_flight": max(1, effective.sockets_in_flight // processes),
        }
    )


def _child(
    index: int,
    processes: int,
    specs: Sequence[str],
    ports: Sequence[int],
    rules: Sequence[ScopeRule],
    pacing: PacingSettings,
    skip: frozenset[str],
    out: Connection,
) -> None:
    guard = ScopeGuard(rules)

    async def run() -> None:
        hosts = itertools.islice(
            _unless(expand_targets(specs, guard=guard), skip), index, None, processes
        )
        batch: list[HostResult] = []
        async for result in sweep(hosts, ports, guard=guard, pacing=pacing):
            batch.append(result)
            if len(batch) >= RESULTS_PER_MESSAGE:
                out.send(batch)
                batch = []
        out.send(batch)

    try:
        asyncio.run(run())
        out.send(None)
    except CybermissionError as exc:
        out.send(exc)
    finally:
        out.close()


def _unless(addresses: Iterator[str], skip: frozenset[str]) -> Iterator[str]:
    return (a for a in addresses if a not in skip) if skip else addresses


async def sweep_specs(
    specs: Sequence[str],
    ports: Sequence[int],
    *,
    guard: ScopeGuard,
    pacing: PacingSettings,
    processes: int | None = None,
    skip: frozenset[str] = frozenset(),
) -> AsyncIterator[HostResult]:
    """Sweep every address of ``specs`` but those in ``skip`` (what a resumed run finished)
    over ``processes`` cores (default: all), streaming.

    With one process this is :func:`sweep` over :func:`expand_targets`, in this event loop.
    """
    count = processes or os.cpu_count() or 1
    if count <= 1:
        async for result in sweep(
            _unless(expand_targets(specs, guard=guard), skip), ports, guard=guard, pacing=pacing
        ):
            yield result
        return
    # Validate in the parent first: a refused spec fails here, before any child starts.
    expand_targets(specs, guard=guard)
    # fork: the children need nothing but these arguments, and start in milliseconds.
    context = multiprocessing.get_context("fork")
    share = share_of(pacing, count)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[list[HostResult] | BaseException | None] = asyncio.Queue()
    children = []
    readers: list[Connection] = []
    for index in range(count):
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(
            target=_child,
            args=(index, count, list(specs), list(ports), guard.rules, share, skip, writer),
            daemon=True,
        )
        child.start()
        writer.close()
        children.append(child)
        readers.append(reader)

        def deliver(conn: Connection = reader) -> None:
            try:
                message = conn.recv()
            except EOFError:
                # The child ended without its final message: it died (killed, out of memory).
                loop.remove_reader(conn.fileno())
                inbox.put_nowait(CybermissionError("a sweep process ended unexpectedly"))
                return
            if message is None or isinstance(message, BaseException):
                loop.remove_reader(conn.fileno())
            inbox.put_nowait(message)

        loop.add_reader(reader.fileno(), deliver)
    finished = 0
    try:
        while finished < count:
            item = await inbox.get()
            if item is None:
                finished += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                for result in item:
                    yield result
    finally:
        for reader in readers:
            with contextlib.suppress(ValueError, OSError):  # already removed, or closed
                loop.remove_reader(reader.fileno())
            reader.close()
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join(timeout=5)
