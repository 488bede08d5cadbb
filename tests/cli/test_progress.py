"""Log lines during a progress display go through its console (above the bar), never into it."""

import io
import logging

import pytest
from rich.console import Console
from rich.progress import Progress

from cybermission.cli.runtime import logs_through
from cybermission.logs import configure_logging


def test_log_lines_print_through_the_progress_console(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    before = logging.getLogger().handlers[:]
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80)
    with Progress(console=console, transient=True) as bar, logs_through(console):
        bar.add_task("scanning", total=10)
        logging.getLogger("cybermission.test").warning("target misbehaves")
    assert "target misbehaves" in screen.getvalue()
    assert "target misbehaves" not in capsys.readouterr().err  # not written past the display
    assert logging.getLogger().handlers == before
