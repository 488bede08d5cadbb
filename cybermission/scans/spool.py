"""A run's durable local spool: batches the store cannot take now wait on local disk, and are
written, oldest first, once it answers again (DESIGN.md §6: "nothing hangs on a dead writer").

A batch the store refuses with a *transient* error (lost connection, refused connections, SQLite
busy) for ``runs.spool_after_s`` goes to the run's journal file (:mod:`cybermission.journal`, the
site sensors' buffer too) and the run keeps probing; while anything waits there, later batches
queue behind it, so hosts are stored in the order they were probed. The spool is retried every
``runs.spool_flush_s``; the run's end waits for it up to ``runs.spool_wait_s``. A batch whose
commit succeeded but whose answer was lost with the connection is not stored twice: its hosts are
already recorded (:mod:`cybermission.scans.resume`), and are skipped. A *permanent* error (disk
full, schema mismatch) is never spooled: it stops the run at once with the store's words.

The file (``<spool_dir>/run-<id>.journal``) exists only while something waits, and is removed once
the spool is empty. A run whose process died with results still spooled finds them when it is
resumed: they are written first, and their hosts are not probed again.
"""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from cybermission.config import RunSettings
from cybermission.errors import CybermissionError
from cybermission.journal import Journal
from cybermission.scans.host_messages import report_from_json, report_to_json
from cybermission.scans.probing import HostReport
from cybermission.store_faults import describe_store_error, is_transient

logger = logging.getLogger(__name__)

SPOOLED = "spooled"


class SpoolNotWrittenError(CybermissionError):
    """The store did not come back in time to take what the run spooled (it stays on disk)."""


class RunSpool:
    """The journal file of one run, opened on its first batch."""

    def __init__(self, directory: Path, scan_run_id: str) -> None:
        self.path = directory / f"run-{scan_run_id}.journal"
        self._journal: Journal | None = None
        if self.path.exists():
            # Left by an execution of this run that died before the store took it: the run is
            # being resumed, which writes these first (``writing.replay_left_spool``) and does
            # not probe their hosts again.
            self._journal = Journal(self.path)

    @property
    def waiting(self) -> int:
        """Batches waiting for the store."""
        return 0 if self._journal is None else self._journal.buffered()

    def append(self, batch: Sequence[HostReport]) -> None:
        if self._journal is None:
            self._journal = Journal(self.path)
        body = {"hosts": [report_to_json(report) for report in batch]}
        self._journal.record(str(uuid.uuid4()), SPOOLED, [body])

    def oldest(self) -> tuple[str, list[HostReport]] | None:
        """The batch that waited longest (its key and hosts), or None."""
        if self._journal is None:
            return None
        for part in self._journal.unconfirmed():
            return part.chunk_id, [report_from_json(host) for host in part.body["hosts"]]
        return None

    def written(self, key: str) -> None:
        """The batch ``key`` is in the store: it leaves the spool (the file too, when empty)."""
        if self._journal is None:
            return
        self._journal.confirm(key, 0)
        if not self._journal.buffered():
            self._remove()

    def _remove(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


class BatchStore(Protocol):
    """Stores one batch in one transaction, retrying transient errors for ``retry_s``; with
    ``skip_recorded``, hosts the run already recorded are not stored again."""

    def __call__(
        self, batch: Sequence[HostReport], retry_s: float, skip_recorded: bool
    ) -> None: ...


class SpooledWriter:
    """Stores a run's batches through ``store`` (one transaction per batch, retried while the
    store errors transiently), spooling what the store cannot take now."""

    def __init__(
        self,
        store: BatchStore,
        spool: RunSpool,
        settings: RunSettings,
    ) -> None:
        self._store = store
        self._spool = spool
        self._settings = settings
        self._next_flush = 0.0
        self.spooled = 0  # batches that went through the spool, for the log and tests

    async def write(self, batch: Sequence[HostReport]) -> None:
        """Store ``batch`` now, or spool it; raises a permanent store error."""
        if self._spool.waiting:
            await self._flush()
            if self._spool.waiting:  # still down: wait behind what is already spooled
                self._append(batch, why="earlier results still wait for the store")
                return
        try:
            await asyncio.to_thread(self._store, batch, self._settings.spool_after_s, False)
        except SQLAlchemyError as exc:
            if not is_transient(exc):
                raise
            self._append(batch, why=describe_store_error(exc))

    async def finish(self) -> None:
        """Write everything spooled, waiting up to ``spool_wait_s`` for the store; raises
        :class:`SpoolNotWrittenError` past that (the spool stays on disk) or a permanent error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.spool_wait_s
        while self._spool.waiting:
            self._next_flush = 0.0
            await self._flush()
            if not self._spool.waiting:
                break
            if loop.time() >= deadline:
                raise SpoolNotWrittenError(
                    f"the store did not come back within {self._settings.spool_wait_s:g} s: "
                    f"{self._spool.waiting} batches of results stay in {self._spool.path}"
                )
            await asyncio.sleep(self._settings.spool_flush_s)
        self._spool.close()
        if self.spooled:
            logger.info("spooled results all stored", extra={"batches": self.spooled})

    def _append(self, batch: Sequence[HostReport], *, why: str) -> None:
        self._spool.append(batch)
        self.spooled += 1
        logger.warning(
            "store unreachable: results spooled",
            extra={"hosts": len(batch), "waiting": self._spool.waiting, "error": why},
        )

    async def _flush(self) -> None:
        """Write the spool oldest first while the store takes it; at most every
        ``spool_flush_s`` (a store still down is not hammered)."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_flush:
            return
        self._next_flush = loop.time() + self._settings.spool_flush_s
        while (oldest := self._spool.oldest()) is not None:
            key, batch = oldest
            try:
                # Skip hosts already recorded: a commit whose answer the lost connection ate.
                await asyncio.to_thread(self._store, batch, 0.0, True)
            except SQLAlchemyError as exc:
                if not is_transient(exc):
                    raise
                return
            self._spool.written(key)
