"""``cybermission lab up|down|status``: simulated OT devices on loopback, in their own process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cybermission.cli.output import FormatOption, check_format, write_rows
from cybermission.cli.runtime import command_group, err, fail
from cybermission.errors import CybermissionError

app = command_group("Simulated OT devices on loopback.")

VAR = Path("var")
LAB_STATE = VAR / "lab.json"
LAB_PID = VAR / "lab.pid"
LAB_LOG = VAR / "lab.log"


def lab_pid() -> int | None:
    """The running lab's process id, or None when no lab runs."""
    try:
        pid = int(LAB_PID.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def lab_start(*, base: str = "127.0.10.0", wait_s: float = 30.0) -> list[dict[str, Any]]:
    """Start the lab in its own process (``python -m scanners.lab``) and wait until it listens."""
    from cybermission.extras import require_extra

    require_extra("lab", feature="cybermission lab")
    VAR.mkdir(exist_ok=True)
    if lab_pid() is None:
        LAB_STATE.unlink(missing_ok=True)
        with LAB_LOG.open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603  (our own module, fixed arguments)
                [
                    sys.executable,
                    "-m",
                    "scanners.lab",
                    "--base",
                    base,
                    "--state-file",
                    str(LAB_STATE),
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        LAB_PID.write_text(str(proc.pid))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if LAB_STATE.exists():
            devices: list[dict[str, Any]] = json.loads(LAB_STATE.read_text())["devices"]
            return devices
        if lab_pid() is None:
            break
        time.sleep(0.2)
    raise CybermissionError(f"the lab did not start; see {LAB_LOG}")


@app.command("up")
def lab_up(
    base: Annotated[str, typer.Option(help="First address of the lab.")] = "127.0.10.0",
) -> None:
    """Start simulated OT devices on loopback."""
    try:
        devices = lab_start(base=base)
    except CybermissionError as exc:
        raise fail(exc) from exc
    err().print(f"lab up: {len(devices)} devices (pid {lab_pid()})")


@app.command("down")
def lab_down() -> None:
    """Stop the lab."""
    pid = lab_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    LAB_PID.unlink(missing_ok=True)
    LAB_STATE.unlink(missing_ok=True)
    err().print("lab down")


@app.command("status")
def lab_status(output: FormatOption = "table") -> None:
    """List the lab's devices."""
    check_format(output)
    pid = lab_pid()
    if pid is None or not LAB_STATE.exists():
        err().print("lab is down")
        raise typer.Exit(code=1)
    rows = [
        {
            "name": d["name"],
            "address": d["address"],
            "port": d["port"],
            "protocol": d["protocol"],
            "identity": d.get("identity", {}),
        }
        for d in json.loads(LAB_STATE.read_text())["devices"]
    ]
    if output == "table":  # the identity on one line, cut: the full one is in json
        rows = [{**r, "identity": json.dumps(r["identity"])[:60]} for r in rows]
    write_rows(rows, output)
