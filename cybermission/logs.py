"""Logging set-up for the console script and the service: one line per event, data in extras."""

import logging
import re
import sys
from collections.abc import Iterable
from urllib.parse import unquote_plus

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


# Libraries that narrate their routine at INFO: APScheduler two lines per scheduler tick (every
# 15 s), Alembic one per plug-in it loads. At INFO they would bury the service's own lines; their
# warnings and errors still show, and at DEBUG everything does.
_CHATTY_AT_INFO = ("apscheduler", "alembic.runtime.plugins")


def configure_logging(level: str = "INFO") -> None:
    """Send logs to stderr (stdout is kept for results)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ExtraFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet = logging.WARNING if root.level == logging.INFO else logging.NOTSET
    for name in _CHATTY_AT_INFO:
        logging.getLogger(name).setLevel(quiet)


# --- redaction: no secret in a log line -------------------------------------------------------

REDACTED = "[redacted]"
ACCESS_LOGGER = "uvicorn.access"
# Loggers whose handlers carry the service's lines: ours (root) and uvicorn's own.
_SERVICE_LOGGERS = ("", "uvicorn", "uvicorn.error", ACCESS_LOGGER)
# Query parameters whose value is a credential by its name (OAuth's access_token, ?token=, ...).
_SENSITIVE_NAME = re.compile(r"token|secret|passw|pwd|key|auth|session|sig|credential", re.I)
# Credentials recognisable by their shape: API tokens (cmt_), browser sessions (cms_), and a
# bearer Authorization or session Cookie value wherever one is quoted.
_CREDENTIAL_SHAPES = re.compile(
    r"cm[ts]_[A-Za-z0-9_-]{8,}"
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]+"
    r"|(?i:cybermission_session=)[^;\s\"']+"
)
_MIN_SECRET_CHARS = 8  # shorter configured values ("guest") are too common to redact literally


class SecretRedactor(logging.Filter):
    """Takes secrets out of every record it sees; never drops a record.

    On uvicorn's access lines (``client - "METHOD path?query HTTP/x" status``) the query value of
    any parameter named like a credential (``token``, ``access_token``, ``api_key``, ``session``,
    ...) becomes ``[redacted]``. Everywhere (the path, other parameters, other loggers' messages,
    exception text), values shaped like our tokens or an ``Authorization``/``Cookie`` value, and
    the configured secrets themselves (the admin token, passwords in URLs), are redacted too, so a
    token sent under an unexpected name or in a path does not reach the log either.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len)[::-1]

    def redact(self, text: str) -> str:
        """``text`` without credential-shaped values or configured secrets."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _CREDENTIAL_SHAPES.sub(_keep_scheme, text)

    def redact_target(self, target: str) -> str:
        """A request target (``/path?query``): credential parameters and secrets redacted."""
        path, mark, query = target.partition("?")
        path = self._redact_encoded(path)
        if not mark:
            return path
        fields = []
        for field in query.split("&"):
            name, equals, value = field.partition("=")
            if equals and _SENSITIVE_NAME.search(unquote_plus(name)):
                value = REDACTED
            else:
                value = self._redact_encoded(value)
            fields.append(f"{self._redact_encoded(name)}{equals}{value}")
        return f"{path}?{'&'.join(fields)}"

    def _redact_encoded(self, part: str) -> str:
        # A secret may arrive percent-encoded: judge the decoded text, keep the raw one if clean.
        decoded = unquote_plus(part)
        cleaned = self.redact(decoded)
        return cleaned if cleaned != decoded else self.redact(part)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == 5:
            # uvicorn's AccessFormatter unpacks exactly these five arguments: keep the shape.
            client, method, target, version, status = args
            record.args = (client, method, self.redact_target(str(target)), version, status)
        else:
            # Judge the merged message: a template (``Bearer %s``) and its arguments are only a
            # credential together. The record then carries the redacted text, without arguments.
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a broken call: logging reports it; keep the record
                message = str(record.msg)
            record.msg, record.args = self.redact(message), None
            # Structured data in ``extra`` is printed too (ExtraFormatter).
            for key, value in vars(record).items():
                if key not in _STANDARD and isinstance(value, str):
                    setattr(record, key, self.redact(value))
        if record.exc_info and record.exc_text is None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def _keep_scheme(match: re.Match[str]) -> str:
    text = match.group(0)
    lowered = text.lower()
    if lowered.startswith("bearer"):
        return text[: len(text) - len(text[6:].lstrip())] + REDACTED
    if lowered.startswith("cybermission_session="):
        return text[: len("cybermission_session=")] + REDACTED
    return REDACTED


def install_redaction(secrets: Iterable[str] = ()) -> SecretRedactor:
    """Put one :class:`SecretRedactor` on uvicorn's access logger and on every handler that
    writes the service's lines (call it after uvicorn configured its loggers)."""
    redactor = SecretRedactor(secrets)
    access = logging.getLogger(ACCESS_LOGGER)
    if redactor not in access.filters:
        access.addFilter(redactor)
    for name in _SERVICE_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(redactor)
    return redactor
