"""The journal: an append-only durable queue in a small local SQLite file, fsynced on commit.

Units of work are recorded finished with their parts in one transaction; each part stays until it
is confirmed delivered, oldest first. Two users, one home:

- the site sensor (SCALE-OUT.md, Sensor): a chunk recorded as finished is never probed again (a
  redelivery only re-publishes what the broker has not confirmed yet), and results stay here until
  the broker confirms them, so a site link that is down buffers results instead of losing them;
  the runs the centre cancelled are kept too, so none of their chunks is probed afterwards;
- a run of the embedded pipeline (``cybermission.scans.spool``): batches the store cannot take now
  wait here until it answers again.
A message the sensor cannot read (another version, malformed) is kept here as received, with the
reason (``refuse``).
"""

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cybermission.clock import utcnow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk (
    chunk_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS part (
    chunk_id TEXT NOT NULL REFERENCES chunk(chunk_id),
    part INTEGER NOT NULL,
    body TEXT NOT NULL,
    confirmed_at TEXT,
    PRIMARY KEY (chunk_id, part)
);
CREATE TABLE IF NOT EXISTS cancelled_run (
    scan_run_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    until TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    received_at TEXT NOT NULL,
    body TEXT NOT NULL,
    error TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class JournalPart:
    chunk_id: str
    part: int
    body: dict[str, Any]


class Journal:
    """Thread-safe: the Celery task and the flusher thread share it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # The journal is the only copy of unconfirmed results: full fsync on commit.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def finished(self, chunk_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM chunk WHERE chunk_id = ?", (chunk_id,)).fetchone()
        return row is not None

    def record(self, chunk_id: str, state: str, parts: Sequence[dict[str, Any]]) -> None:
        """The chunk as finished and all its result parts, in one transaction."""
        now = utcnow().isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO chunk (chunk_id, state, finished_at) VALUES (?, ?, ?)",
                    (chunk_id, state, now),
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO part (chunk_id, part, body) VALUES (?, ?, ?)",
                    [(chunk_id, i, json.dumps(p)) for i, p in enumerate(parts)],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def unconfirmed(self, chunk_id: str | None = None) -> list[JournalPart]:
        query = "SELECT chunk_id, part, body FROM part WHERE confirmed_at IS NULL"
        args: tuple[str, ...] = ()
        if chunk_id is not None:
            query += " AND chunk_id = ?"
            args = (chunk_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY rowid", args).fetchall()
        return [JournalPart(c, int(p), json.loads(b)) for c, p, b in rows]

    def confirm(self, chunk_id: str, part: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE part SET confirmed_at = ? WHERE chunk_id = ? AND part = ?",
                (utcnow().isoformat(), chunk_id, part),
            )

    def cancel_run(self, scan_run_id: str, *, reason: str, until: str) -> None:
        """Remember that the run was cancelled (the sensor probes none of its chunks again)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO cancelled_run (scan_run_id, reason, until) VALUES (?, ?, ?)",
                (scan_run_id, reason, until),
            )

    def cancelled(self, scan_run_id: str) -> str | None:
        """Why the run was cancelled, or None while it is not."""
        with self._lock:
            row = self._db.execute(
                "SELECT reason FROM cancelled_run WHERE scan_run_id = ?", (scan_run_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def chunk_state(self, chunk_id: str) -> str | None:
        """The state the chunk was recorded finished in, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM chunk WHERE chunk_id = ?", (chunk_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def refuse(self, body: object, error: str) -> None:
        """Keep a message the sensor refused, as it came (its JSON), and why."""
        with self._lock:
            self._db.execute(
                "INSERT INTO refused (received_at, body, error) VALUES (?, ?, ?)",
                (utcnow().isoformat(), json.dumps(body, default=repr), error),
            )

    def refused(self) -> list[tuple[object, str]]:
        """The refused messages, oldest first, each with the reason."""
        with self._lock:
            rows = self._db.execute("SELECT body, error FROM refused ORDER BY rowid").fetchall()
        return [(json.loads(b), e) for b, e in rows]

    def buffered(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM part WHERE confirmed_at IS NULL"
            ).fetchone()
        return int(row[0])
