"""The one clock: timezone-aware UTC now, for the store and for the store-free sensor side."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
