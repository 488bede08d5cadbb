"""``cybermission demo`` (what ``make run`` runs) stopped by SIGTERM while its first scan runs:
the scan ends ``interrupted`` with the signal's name and the lab the demo started is stopped.

Before, uvicorn ended the process by the signal right after the service stopped, and the demo's
first scan was none of the service's: the lab stayed up, and the run stayed "running" until
another process noticed its owner gone.
"""

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.timing import scaled

HOST = "127.0.0.1"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_demo_stopped_mid_scan_interrupts_its_scan_and_stops_its_lab(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CYBERMISSION_")}
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cybermission", "demo", "--host", HOST, "--port", str(port)],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(Path.cwd())},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    lab_pid = 0
    try:
        deadline = time.monotonic() + scaled(120)
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://{HOST}:{port}/healthz", timeout=scaled(2)).is_success:
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        lab_pid = int((tmp_path / "var" / "lab.pid").read_text())
        assert lab_pid > 0
        # The first scan sweeps 64 lab addresses at the safe pace (13 s at least): still running.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=scaled(60))
        deadline = time.monotonic() + scaled(30)
        while not _gone(lab_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(lab_pid), "the demo's lab is still up"
        assert not (tmp_path / "var" / "lab.pid").exists()
        with contextlib.closing(sqlite3.connect(tmp_path / "var" / "cybermission.db")) as store:
            runs = store.execute("SELECT status, reason FROM scan_run").fetchall()
        assert runs == [("interrupted", "interrupted: the service stopped (SIGTERM)")], runs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if lab_pid > 0 and not _gone(lab_pid):
            os.kill(lab_pid, signal.SIGTERM)
