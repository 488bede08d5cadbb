"""Store-wide process locks: exactly one scheduler, one delivery worker per store."""

import fcntl
import hashlib
import os
import threading
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from cybermission.store_links import bound_held, store_deadline

_memory_locks: dict[str, threading.Lock] = {}
_memory_guard = threading.Lock()


class ProcessLock:
    """Exactly one holder per store across processes.

    PostgreSQL: a session advisory lock (``pg_try_advisory_lock``); SQLite: ``flock`` on a file
    beside the database. Both vanish with the holding process, ``kill -9`` included, so a crashed
    holder never blocks its successor and no lease has to expire first.
    """

    def __init__(self, engine: Engine, name: str) -> None:
        self._engine = engine
        self._name = name
        self._connection: Connection | None = None
        self._file: IO[bytes] | None = None
        self._memory: threading.Lock | None = None
        self._key = 0
        self._path: Path | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None or self._file is not None or self._memory is not None

    def acquire(self) -> bool:
        """Take the lock if free; never blocks. True if this object holds it now."""
        if self.held:
            return True
        dialect = self._engine.dialect.name
        if dialect == "postgresql":
            return self._acquire_postgres()
        database = self._engine.url.database
        if dialect == "sqlite" and database and database != ":memory:":
            return self._acquire_file(Path(f"{database}.{self._name}.lock"))
        with _memory_guard:
            lock = _memory_locks.setdefault(self._name, threading.Lock())
        if lock.acquire(blocking=False):
            self._memory = lock
            return True
        return False

    def verify(self) -> bool:
        """Whether this object really still holds the lock; drops it when it does not.

        ``held`` only says a lock was taken. PostgreSQL releases a session's advisory locks when
        its connection is lost (a restart, ``pg_terminate_backend``, a network cut), and another
        process may take it then: re-check before every act that only the holder may do.
        """
        if self._connection is not None:
            try:
                # Under the stall deadline (store_links): a store gone silent loses the lock
                # after ``store.stall_s`` instead of holding the caller (a tick) for ever.
                with store_deadline(self._engine, "check a process lock"):
                    bound_held(self._connection)
                    still = bool(
                        self._connection.execute(
                            text(
                                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                " AND pid = pg_backend_pid() AND granted"
                                " AND ((classid::bigint << 32) | objid::bigint) = :k"
                            ),
                            {"k": self._key},
                        ).scalar()
                    )
            except SQLAlchemyError:
                still = False
            if not still:
                self._drop_connection()
            return still
        if self._file is not None:
            # A lock file someone removed and another process re-created is a second lock.
            try:
                same = self._path is not None and (
                    os.fstat(self._file.fileno()).st_ino == self._path.stat().st_ino
                )
            except OSError:
                same = False
            if not same:
                self._file.close()
                self._file = None
            return same
        return self._memory is not None

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except SQLAlchemyError:
                pass  # already broken: nothing left to release on the server
            self._connection = None

    def _acquire_postgres(self) -> bool:
        # Advisory lock keys are bigint: the first 8 bytes of a hash of the name, signed.
        key = int.from_bytes(hashlib.sha256(self._name.encode()).digest()[:8], "big", signed=True)
        with store_deadline(self._engine, "take a process lock"):
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                query = text("SELECT pg_try_advisory_lock(:k)")
                got = bool(connection.execute(query, {"k": key}).scalar())
            except SQLAlchemyError:
                connection.invalidate()  # given up mid-query: not back to the pool
                connection.close()
                raise
        if got:
            self._connection = connection
            self._key = key
        else:
            connection.close()
        return got

    def _acquire_file(self, path: Path) -> bool:
        handle = path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self._file = handle
        self._path = path
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                with store_deadline(self._engine, "release a process lock"):
                    bound_held(self._connection)
                    self._connection.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": self._key}
                    )
            except SQLAlchemyError:
                # The connection is already lost (a restart, a terminated backend): the server
                # released the lock with it, so there is nothing left to unlock.
                self._connection.invalidate()
            finally:
                self._connection.close()
                self._connection = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._memory is not None:
            self._memory.release()
            self._memory = None
