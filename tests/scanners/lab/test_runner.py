"""Tests of ``python -m scanners.lab``: state file once listening, clean stop on SIGTERM/SIGINT."""

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cybermission.net import Connector
from cybermission.probes import ProbeTarget, RequestLedger, Transport
from scanners.lab.modbus_devices import modbus_lab_devices
from scanners.modbus import ModbusProbe
from tests.timing import scaled

READY_TIMEOUT_S = scaled(30.0)


async def _spawn(base: str, state_file: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scanners.lab",
        "--base",
        base,
        "--state-file",
        str(state_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def lab_process(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    state_file = tmp_path / "var" / "lab.json"
    process = await _spawn("127.20.60.0", state_file)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(READY_TIMEOUT_S):
            line = await process.stdout.readline()
        assert line.startswith(b"lab ready"), line
        yield process, state_file
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_lab_runner_writes_state_file_once_listening(
    lab_process: tuple[asyncio.subprocess.Process, Path], connector: Connector
) -> None:
    process, state_file = lab_process
    state = json.loads(state_file.read_text())
    assert state["pid"] == process.pid
    by_name = {d["name"]: d for d in state["devices"]}
    expected = modbus_lab_devices("127.20.60.0")
    for device in expected:
        assert by_name[device.name] == {
            "name": device.name,
            "address": device.address,
            "port": 502,
            "protocol": "modbus",
            "identity": device.identity,
        }
    plc = by_name["modbus-plc-m340"]
    target = ProbeTarget(
        plc["address"], 502, Transport.TCP, connector, RequestLedger("modbus", ModbusProbe.manifest)
    )
    observation = await ModbusProbe().observe(target, timeout_s=scaled(2.0))
    assert observation is not None
    assert {k: observation.facts[k] for k in plc["identity"]} == plc["identity"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_lab_runner_stops_cleanly_on_signal(
    lab_process: tuple[asyncio.subprocess.Process, Path], signum: signal.Signals
) -> None:
    process, state_file = lab_process
    process.send_signal(signum)
    async with asyncio.timeout(READY_TIMEOUT_S):
        assert await process.wait() == 0
    assert not state_file.exists()


async def test_lab_runner_exits_1_without_state_when_an_address_is_taken(tmp_path: Path) -> None:
    squatter = modbus_lab_devices("127.20.61.0")[0]
    await squatter.start()
    try:
        state_file = tmp_path / "lab.json"
        process = await _spawn("127.20.61.0", state_file)
        async with asyncio.timeout(READY_TIMEOUT_S):
            _, stderr = await process.communicate()
        assert process.returncode == 1
        assert b"lab failed" in stderr
        assert not state_file.exists()
    finally:
        await squatter.stop()


def test_lab_runner_refuses_a_base_outside_loopback() -> None:
    from scanners.lab.runner import main

    with pytest.raises(SystemExit) as excinfo:
        main(["--base", "10.0.0.0"])
    assert excinfo.value.code == 2
