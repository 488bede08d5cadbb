"""Fixtures of the scan tests shared by more than one file."""

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.timing import scaled

BASE = "127.50.60.0"


@pytest.fixture
async def whole_lab(tmp_path: Path) -> AsyncIterator[list[dict[str, Any]]]:
    """Every simulator of ``cybermission lab`` on 127.50.60.0, a process per test."""
    state = tmp_path / "lab.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scanners.lab",
        "--base",
        BASE,
        "--state-file",
        str(state),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(scaled(60.0)):
            line = await process.stdout.readline()
        assert line.startswith(b"lab ready"), line
        yield json.loads(state.read_text())["devices"]
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
