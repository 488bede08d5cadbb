"""Writing a live run's hosts: batches taken from the probing side's queue and stored in a
thread (:func:`~cybermission.scans.recording.store_batch`), so the event loop keeps connecting
while the store commits; transient store errors retried, batches the store cannot take spooled
(:mod:`~cybermission.scans.spool`).
"""

import asyncio
import functools
from collections.abc import Sequence

from sqlalchemy import Engine

from cybermission.config import RunSettings
from cybermission.scans.probing import HostReport
from cybermission.scans.recording import WRITE_BATCH_HOSTS, RunState, store_batch
from cybermission.scans.spool import RunSpool, SpooledWriter
from cybermission.store_faults import retry_transient
from cybermission.store_links import store_deadline

WRITE_BATCH_WAIT_S = 0.25


async def write_batches(
    engine: Engine,
    state: RunState,
    queue: asyncio.Queue[HostReport | None],
    *,
    retry_s: float = 60.0,
    runs: RunSettings | None = None,
) -> None:
    """Write the queued hosts in batches until the ``None`` that ends the run.

    A transient store error (lost connection, SQLite busy, serialisation failure) is retried with
    back-off for up to ``retry_s``; with ``runs``, batches the store cannot take for
    ``runs.spool_after_s`` wait in the run's durable spool instead (``spool.py``) and the end
    waits for them. A permanent error (disk full, schema mismatch), or a transient one that
    outlasts the retries or the spool's wait, raises: the run's owner stops probing and fails
    the run with the reason.
    """
    writer = (
        SpooledWriter(
            functools.partial(_store_batch_retrying, engine, state),
            RunSpool(runs.spool_dir, state.run_id),
            runs,
        )
        if runs is not None
        else None
    )
    done = False
    while not done:
        first = await queue.get()
        if first is None:
            break
        batch = [first]
        deadline = asyncio.get_running_loop().time() + WRITE_BATCH_WAIT_S
        while len(batch) < WRITE_BATCH_HOSTS:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                item = (
                    queue.get_nowait()
                    if remaining <= 0
                    else await asyncio.wait_for(queue.get(), remaining)
                )
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if item is None:
                done = True
                break
            batch.append(item)
        if writer is not None:
            await writer.write(batch)
        else:
            await asyncio.to_thread(_store_batch_retrying, engine, state, batch, retry_s)
        for report in batch:
            state.add_errors(report.errors)
            state.sent.add(report.sent)
        state.tick()
    if writer is not None:
        await writer.finish()


def replay_left_spool(engine: Engine, state: RunState, runs: RunSettings) -> list[HostReport]:
    """Write what an earlier execution of this run spooled and never stored (its process died
    first), oldest first; returns the spooled hosts (those it had stored already, a commit whose
    answer was lost, are not stored twice). A store still away raises as a batch would (the spool
    stays on disk for the next resume); written batches leave it, and the file with the last."""
    spool = RunSpool(runs.spool_dir, state.run_id)
    stored: list[HostReport] = []
    try:
        while (oldest := spool.oldest()) is not None:
            key, batch = oldest
            _store_batch_retrying(engine, state, batch, runs.store_retry_s, True)
            stored.extend(batch)
            spool.written(key)
    finally:
        spool.close()
    return stored


def _store_batch_retrying(
    engine: Engine,
    state: RunState,
    batch: Sequence[HostReport],
    retry_s: float,
    skip_recorded: bool = False,
) -> None:
    attempts = 0

    def attempt() -> None:
        nonlocal attempts
        attempts += 1
        # A failed transaction rolled the store back: the state it counted goes back too.
        observations, findings = state.progress.observations, state.progress.findings
        clean = set(state.clean_devices)
        try:
            # Again after an error: the lost connection may have eaten a successful commit.
            # A connection that stops answering is given up (store_links): never a hang.
            with store_deadline(engine, "store a batch of hosts"):
                store_batch(engine, state, batch, skip_recorded=skip_recorded or attempts > 1)
        except BaseException:
            state.progress.observations, state.progress.findings = observations, findings
            state.clean_devices = clean
            raise

    retry_transient(attempt, horizon_s=retry_s, what="store a batch of hosts")
