"""Two CPU hogs (Debian's ``stress-ng --cpu 2``) for running a benchmark on a busy machine.

A result (ports found, devices identified) must not change when the machine is loaded; only the
times may (../shared/BENCHMARKS.md, "a busy machine").
"""

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator


@contextlib.contextmanager
def cpu_hogs(enabled: bool = True) -> Iterator[None]:
    """Two CPU hogs while the block runs (nothing when ``enabled`` is false)."""
    if not enabled:
        yield
        return
    stress = shutil.which("stress-ng")
    if stress is None:
        raise SystemExit("stress-ng is missing: apt-get install stress-ng")
    hogs = subprocess.Popen(
        [stress, "--cpu", "2", "--timeout", "3600s", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(1.0)  # the hogs hold the cores before the first run
        yield
    finally:
        os.killpg(hogs.pid, signal.SIGTERM)
        hogs.wait(timeout=30)
