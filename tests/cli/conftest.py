"""Every CLI test runs commands in-process: the root logger is put back after each."""

import pytest


@pytest.fixture(autouse=True)
def _cli_logging(restore_logging: None) -> None:
    """``restore_logging`` (tests/conftest.py) for every test here."""
