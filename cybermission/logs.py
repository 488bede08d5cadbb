"""Logging set-up for the console script and the service: one line per event, data in extras."""

import logging
import sys

_STANDARD = set(vars(logging.makeLogRecord({})))
_DERIVED = {"message", "asctime"}  # set by Formatter.format itself


class ExtraFormatter(logging.Formatter):
    """Append ``key=value`` for each ``extra`` field so structured data survives plain text."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and k not in _DERIVED}
        if not extras:
            return base
        return base + " " + " ".join(f"{k}={v!r}" for k, v in sorted(extras.items()))


def configure_logging(level: str = "INFO") -> None:
    """Send logs to stderr (stdout is kept for results)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ExtraFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
