"""What a store error means, and retrying the ones that pass.

Transient: the connection was lost (PostgreSQL restarted, ``pg_terminate_backend``, a network
cut), SQLite was busy or locked by another writer, a serialisation failure or deadlock. Each
store transaction of ours is all-or-nothing, so running it again is safe and is what to do.

Permanent: the disk is full, the schema is not the code's (a missing table or column), the file
is read-only, a constraint broke (our bug). Retrying would only hide it: the caller stops and
says why, with :func:`describe_store_error`.
"""

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL SQLSTATE classes and codes that pass (Appendix A of the PostgreSQL manual):
# 08 connection exception, 40001 serialization_failure, 40P01 deadlock_detected,
# 57P01-57P03 admin/crash shutdown and cannot_connect_now, 53300 too_many_connections.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "53300", "55P03"}
_TRANSIENT_SQLSTATE_CLASSES = {"08"}
# SQLite result codes that pass: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
_SQLITE_TRANSIENT = {5, 6}
_SQLITE_TRANSIENT_TEXT = ("database is locked", "database table is locked", "database is busy")

# Back-off between attempts: doubles from the first delay, capped.
FIRST_DELAY_S = 0.05
MAX_DELAY_S = 2.0


def is_transient(exc: BaseException) -> bool:
    """Whether running the same transaction again may succeed."""
    if isinstance(exc, DisconnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF in _SQLITE_TRANSIENT
        return any(text in str(orig) for text in _SQLITE_TRANSIENT_TEXT)
    # A psycopg error without a SQLSTATE is a client-side connection failure (server gone), its
    # subclasses too (ConnectionTimeout: a connect_timeout that expired).
    return orig is not None and any(
        kind.__name__ == "OperationalError" for kind in type(orig).__mro__
    )


def describe_store_error(exc: BaseException) -> str:
    """One line naming what went wrong with the store, for a run's reason (no SQL, no values)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    detail = str(orig if orig is not None else exc).strip().splitlines()
    first = detail[0] if detail else exc.__class__.__name__
    return f"{(orig or exc).__class__.__name__}: {first}"[:300]


def retry_transient(
    work: Callable[[], T],
    *,
    horizon_s: float,
    what: str,
    should_stop: Callable[[], bool] = lambda: False,
) -> T:
    """Run ``work`` (one whole transaction) again after transient store errors, with doubling
    back-off, for at most ``horizon_s``; the last error is raised past that, at once for a
    permanent one, and as soon as ``should_stop`` says the caller gave up."""
    deadline = time.monotonic() + horizon_s
    delay_s = FIRST_DELAY_S
    attempt = 1
    while True:
        try:
            return work()
        except SQLAlchemyError as exc:
            if not is_transient(exc) or time.monotonic() + delay_s > deadline or should_stop():
                raise
            logger.warning(
                "store busy or unreachable: retrying",
                extra={"work": what, "attempt": attempt, "error": describe_store_error(exc)},
            )
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, MAX_DELAY_S)
        attempt += 1
