"""Log lines during a progress display go through its console (above the bar), never into it."""

import io
import logging
import subprocess
import sys

import pytest
from rich.console import Console
from rich.progress import Progress

from cybermission.cli.runtime import logs_through
from cybermission.cli.scan import progress_bar
from cybermission.logs import configure_logging
from cybermission.scans.probing import ScanProgress


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


def test_no_progress_bar_is_built_or_imported_off_a_terminal() -> None:
    # A scan's output to a file or pipe: the bar would show nothing, so neither its refresh thread
    # nor the import of rich.progress (~40 ms of start-up, issue 12) is paid for.
    code = (
        "import io, sys\n"
        "from rich.console import Console\n"
        "from cybermission.cli.scan import progress_bar\n"
        "from cybermission.scans.probing import ScanProgress\n"
        "with progress_bar(Console(file=io.StringIO()), 3) as show:\n"
        '    show(ScanProgress(scan_run_id="r", hosts_total=3, hosts_swept=1))\n'
        "print('rich.progress' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_progress_bar_shows_on_a_terminal() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80)
    with progress_bar(console, 4) as show:
        show(
            ScanProgress(
                scan_run_id="r", hosts_total=4, hosts_swept=2, hosts_live=1, observations=5
            )
        )
    assert "scanning" in screen.getvalue()
