"""``import pcap`` of damaged captures: read up to the damage and say so (a partial run), or
refused when not one packet can be read; never ``succeeded`` in silence."""

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cybermission.cli import app
from tests.cli.stores import store_url
from tests.conftest import shared_data

CAPTURE = shared_data("pcaps", "modbus", "mod_17.pcap")
PCAPNG = shared_data("pcaps", "melsec-q", "melsecq_tcp.pcapng")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CYBERMISSION_DATABASE_URL": store_url(tmp_path / "cli.db")}


def _import(env: dict[str, str], capture: Path) -> tuple[int, dict[str, Any] | None, str]:
    result = CliRunner().invoke(app, ["import", "pcap", str(capture), "--format", "json"], env=env)
    report = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, report, result.stderr


def _damaged(tmp_path: Path, source: Path, data: bytes) -> Path:
    target = tmp_path / f"damaged{source.suffix}"
    target.write_bytes(data)
    return target


def test_whole_capture_succeeds(env: dict[str, str]) -> None:
    code, report, _ = _import(env, CAPTURE)
    assert code == 0
    assert report is not None
    assert report["scan"]["status"] == "succeeded"
    assert report["scan"]["errors"] == []


def test_capture_cut_inside_a_record_is_partial(env: dict[str, str], tmp_path: Path) -> None:
    data = CAPTURE.read_bytes()
    code, report, err = _import(env, _damaged(tmp_path, CAPTURE, data[: len(data) - 3]))
    assert code == 0
    assert report is not None
    assert report["scan"]["status"] == "partial"
    (error,) = report["scan"]["errors"]
    assert error["stage"] == "import"
    assert "cut or damaged" in error["error"]
    assert "damaged:" in err


def test_capture_cut_inside_a_record_header_is_partial(env: dict[str, str], tmp_path: Path) -> None:
    whole = CAPTURE.read_bytes()
    code, report, _ = _import(env, _damaged(tmp_path, CAPTURE, whole + whole[24:30]))
    assert code == 0
    assert report is not None
    assert report["scan"]["status"] == "partial"
    assert "6 bytes" in report["scan"]["errors"][0]["error"]


def test_pcapng_with_a_broken_block_is_partial(env: dict[str, str], tmp_path: Path) -> None:
    data = PCAPNG.read_bytes()
    code, report, _ = _import(env, _damaged(tmp_path, PCAPNG, data[: len(data) // 2]))
    assert code == 0
    assert report is not None
    assert report["scan"]["status"] == "partial"


def test_capture_with_no_readable_packet_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    data = CAPTURE.read_bytes()
    damaged = bytearray(data)
    damaged[24 + 8 : 24 + 12] = b"\xff\xff\xff\x7f"  # the first record claims 2 GiB
    code, report, err = _import(env, _damaged(tmp_path, CAPTURE, bytes(damaged)))
    assert code == 2
    assert report is None
    assert "no packet could be read" in err
