"""Log redaction: credential query values, token-shaped values and configured secrets never
reach a log line; everything else of the line stays readable."""

import logging
import sys

import pytest

from cybermission.config import load_settings, secret_values
from cybermission.logs import ACCESS_LOGGER, REDACTED, SecretRedactor, configure_logging

ADMIN = "plain-admin-secret-42"
API_TOKEN = "cmt_0123456789ab_" + "A" * 43
SESSION = "cms_" + "b" * 43


def _access(target: str) -> logging.LogRecord:
    return logging.LogRecord(
        ACCESS_LOGGER,
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", target, "1.1", 200),
        None,
    )


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/dashboard?token=abc", f"/dashboard?token={REDACTED}"),
        ("/x?access_token=abc&site_id=s1", f"/x?access_token={REDACTED}&site_id=s1"),
        ("/x?api_key=abc&Password=p&limit=5", f"/x?api_key={REDACTED}&Password={REDACTED}&limit=5"),
        (f"/x?q={ADMIN}", f"/x?q={REDACTED}"),
        (f"/x?q={API_TOKEN}", f"/x?q={REDACTED}"),
        (f"/api/v1/tokens/{API_TOKEN}", f"/api/v1/tokens/{REDACTED}"),
        (f"/api/v1/assets/{ADMIN}", f"/api/v1/assets/{REDACTED}"),
        ("/x?q=plain-admin%2Dsecret%2D42", f"/x?q={REDACTED}"),
        ("/api/v1/findings?rule_id=modbus&limit=10", "/api/v1/findings?rule_id=modbus&limit=10"),
    ],
)
def test_logs_access_lines_lose_credentials(target: str, logged: str) -> None:
    record = _access(target)
    SecretRedactor([ADMIN]).filter(record)
    assert isinstance(record.args, tuple)
    assert record.args[2] == logged
    assert record.args[0] == "127.0.0.1:5000"  # the shape uvicorn's formatter unpacks


def test_logs_other_records_lose_token_shapes_and_secrets() -> None:
    record = logging.LogRecord(
        "cybermission.x",
        logging.WARNING,
        __file__,
        1,
        "refused Authorization: Bearer %s cookie cybermission_session=%s and %s",
        ("whatever-1234", SESSION, ADMIN),
        None,
    )
    SecretRedactor([ADMIN]).filter(record)
    message = record.getMessage()
    assert message == (
        f"refused Authorization: Bearer {REDACTED} cookie cybermission_session={REDACTED} "
        f"and {REDACTED}"
    )


def test_logs_exception_text_is_redacted() -> None:
    try:
        raise ValueError(f"bad token {API_TOKEN}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, None)
        record.exc_info = sys.exc_info()
    SecretRedactor().filter(record)
    assert record.exc_text is not None
    assert API_TOKEN not in record.exc_text
    assert REDACTED in record.exc_text


def test_logs_secret_values_are_the_configured_secrets() -> None:
    settings = load_settings(
        admin_token=ADMIN,
        database_url="postgresql+psycopg://cm:db%2Fpass@127.0.0.1/cm",
        broker={
            "url": "amqp://cm:broker-pass@127.0.0.1:5672/",
            "management_password": "mgmt-pass-1",
        },
    )
    values = secret_values(settings)
    assert {ADMIN, "db/pass", "broker-pass", "mgmt-pass-1"} <= set(values)
    assert not any("://" in v for v in values)  # a URL's password, not the URL


def test_library_routine_is_quiet_at_info_and_shown_at_debug() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        ticks = logging.getLogger("apscheduler.executors.default")
        assert not ticks.isEnabledFor(logging.INFO)  # a line per scheduler tick would bury ours
        assert ticks.isEnabledFor(logging.WARNING)
        assert logging.getLogger("cybermission.scans").isEnabledFor(logging.INFO)
        configure_logging("DEBUG")
        assert ticks.isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in ("apscheduler", "alembic.runtime.plugins"):
            logging.getLogger(name).setLevel(logging.NOTSET)
