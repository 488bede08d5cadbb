"""The lab runner: starts every ``cybermission.lab`` device in one asyncio process until signalled.

CLI contract (the core spawns it; it never imports ``scanners``)::

    python -m scanners.lab [--base 127.0.10.0] [--state-file var/lab.json] [--without NAME]...

- Loads every entry point of the ``cybermission.lab`` group; each is a callable
  ``(base: str) -> list[device]`` whose devices have ``name``, ``address``, ``port``, ``protocol``,
  ``identity`` and ``async start()`` / ``async stop()``.
- Once every device listens, writes the state file atomically (temp file + rename), then prints
  one line ``lab ready <n> devices`` to stdout. State file JSON:
  ``{"pid": int, "base": str, "started_at": ISO-8601 UTC, "devices": [{"name", "address", "port",
  "protocol", "identity"}]}``.
- ``--without NAME`` leaves that device out (a device gone offline, for the fault suite); a name
  no device has is an error (exit 2), so a typo never passes for an absent device.
- SIGTERM or SIGINT: stops every device, removes the state file, exits 0.
- A device that cannot listen (address in use, permission): stops what started, writes no state
  file, prints the reason to stderr and exits 1.
- The ``lab`` extra's simulator libraries missing: prints which, and the pip command, to stderr and
  exits 2 before loading any device.
"""

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, TypeVar

from cybermission.errors import CybermissionError
from cybermission.extras import require_extra
from cybermission.probes import JSONValue

logger = logging.getLogger(__name__)


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


DeviceT = TypeVar("DeviceT", bound=Startable)


@asynccontextmanager
async def listening(devices: Sequence[DeviceT]) -> AsyncIterator[Sequence[DeviceT]]:
    """Every device started, in order, for the ``with`` block; on the way out, and when one
    fails to start, those that started are stopped, last first (the lab, tests, benchmarks)."""
    started: list[DeviceT] = []
    try:
        for device in devices:
            await device.start()
            started.append(device)
        yield devices
    finally:
        for device in reversed(started):
            await device.stop()


class LabService(Protocol):
    """What the runner needs from a lab device, whatever its protocol."""

    name: str
    address: str
    port: int
    protocol: str
    identity: dict[str, JSONValue]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def load_lab_devices(base: str) -> list[LabService]:
    """Every device of every ``cybermission.lab`` entry point, on ``base``."""
    devices: list[LabService] = []
    for entry in entry_points(group="cybermission.lab"):
        try:
            factory = entry.load()
        except (ImportError, AttributeError):
            # One broken plug-in must not take the whole lab down; tests load every entry point.
            logger.exception("lab entry point does not load", extra={"entry_point": entry.name})
            continue
        devices.extend(factory(base))
    return devices


def _write_state(path: Path, base: str, devices: Sequence[LabService]) -> None:
    state = {
        "pid": os.getpid(),
        "base": base,
        "started_at": datetime.now(UTC).isoformat(),
        "devices": [
            {
                "name": d.name,
                "address": d.address,
                "port": d.port,
                "protocol": d.protocol,
                "identity": d.identity,
            }
            for d in devices
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=2), encoding="utf-8")
    temporary.replace(path)


def _remove_state(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def run_lab(base: str, state_file: Path, without: Sequence[str] = ()) -> int:
    """Start every device (but those named in ``without``), publish the state file, wait for
    SIGTERM/SIGINT, stop cleanly."""
    devices = load_lab_devices(base)
    unknown = sorted(set(without) - {d.name for d in devices})
    if unknown:
        print(f"lab failed: --without names no device: {', '.join(unknown)}", file=sys.stderr)
        return 2
    devices = [d for d in devices if d.name not in without]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as running:
        try:
            await running.enter_async_context(listening(devices))
        except OSError as exc:
            print(f"lab failed: {exc}", file=sys.stderr, flush=True)
            return 1
        _write_state(state_file, base, devices)
        print(f"lab ready {len(devices)} devices", flush=True)
        logger.info("lab ready", extra={"devices": len(devices), "state_file": str(state_file)})
        try:
            await stop.wait()
        finally:
            _remove_state(state_file)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scanners.lab", description=__doc__)
    parser.add_argument("--base", default="127.0.10.0", help="first address of the lab /24")
    parser.add_argument("--state-file", type=Path, default=Path("var/lab.json"))
    parser.add_argument(
        "--without", action="append", default=[], metavar="NAME", help="leave this device out"
    )
    args = parser.parse_args(argv)
    base = ipaddress.IPv4Address(args.base)
    if not base.is_loopback:
        parser.error(f"--base {base} is not in 127.0.0.0/8: the lab only runs on loopback")
    try:
        require_extra("lab", feature="the lab")
    except CybermissionError as exc:
        print(f"lab failed: {exc}", file=sys.stderr, flush=True)
        return 2
    return asyncio.run(run_lab(str(base), args.state_file, args.without))
