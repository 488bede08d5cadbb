"""The console script as a user runs it: a real process, real lab devices on 127.50.2.x."""

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cybermission.cli.runtime import fail
from cybermission.errors import CybermissionError
from cybermission.probes import load_probes
from scanners.lab.modbus_devices import LabDevice, modbus_lab_devices
from tests.cli.stores import store_url
from tests.conftest import shared_data

BASE = "127.50.2.0"


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, LabDevice]]:
    devices = modbus_lab_devices(BASE)[:3]
    for device in devices:
        await device.start()
    try:
        yield {d.name: d for d in devices}
    finally:
        for device in devices:
            await device.stop()


async def _cli(tmp_path: Path, *args: str, **more_env: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        **more_env,
        "CYBERMISSION_DATABASE_URL": store_url(tmp_path / "cli.db"),
        "CYBERMISSION_PACING__PROFILE": "lab",
        "CYBERMISSION_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cybermission",
        *args,
        env=env,
        cwd=Path.cwd(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_scan_json_follows_the_contract(
    lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    code, out, _ = await _cli(
        tmp_path, "scan", f"{BASE}/28", "--ports", "502,102", "--format", "json"
    )
    assert code == 0
    report = json.loads(out)
    assert report["scan"]["status"] == "succeeded"
    vendors = sorted(a["vendor"] for a in report["assets"])
    assert vendors == sorted(str(d.identity["vendor"]) for d in lab.values())
    assert {f["rule_id"] for f in report["findings"]} >= {"modbus-unauthenticated-reachable"}


async def test_cli_scan_stores_its_run_with_only_the_tables_of_a_scan(
    lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    # The scan command puts only the pipeline's tables on the metadata (not cybermission.models):
    # its inventory, findings and run are still written whole.
    code, out, err = await _cli(
        tmp_path,
        "scan",
        f"{BASE}/28",
        "--ports",
        "502",
        "--format",
        "json",
        PYTHONPROFILEIMPORTTIME="1",
    )
    assert code == 0
    report = json.loads(out)
    assert report["scan"]["status"] == "succeeded"
    assert len(report["assets"]) == len(lab)
    assert report["findings"]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in err.splitlines()
        if line.startswith("import time:")
    }
    assert "cybermission.scans.pipeline" in imported
    assert not imported & {
        "cybermission.models",
        "cybermission.sensors.models",
        "cybermission.scans.schedules",
    }


async def test_cli_scans_resume_starts_as_scan_does(tmp_path: Path) -> None:
    # A run interrupted (as a killed scan's is closed), resumed by the command: it starts with
    # the pipeline's tables only, as ``scan`` does. Nothing listens on 127.53.2.2.
    code, out, _ = await _cli(
        tmp_path, "scan", "127.53.2.2", "--ports", "502", "--udp-ports", "none", "--format", "json"
    )
    assert code == 0
    run_id = json.loads(out)["scan"]["id"]
    with sqlite3.connect(tmp_path / "cli.db") as store:
        store.execute("UPDATE scan_run SET status = 'interrupted' WHERE id = ?", (run_id,))
    code, out, err = await _cli(
        tmp_path, "scans", "resume", run_id, "--format", "json", PYTHONPROFILEIMPORTTIME="1"
    )
    assert code == 0, err[-2000:]
    assert json.loads(out)["scan"]["status"] == "succeeded"
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in err.splitlines()
        if line.startswith("import time:")
    }
    assert "cybermission.scans.pipeline" in imported
    assert "cybermission.models" not in imported


# Run as a script: the collector's own callbacks count its collections once the store's code is
# being imported (the CLI's own imports come before the command runs), up to the freeze.
_COUNT_COLLECTIONS = """
import gc, sys
collections = []
gc.callbacks.append(
    lambda phase, info: phase == "start" and "sqlalchemy" in sys.modules and collections.append(1)
)
freeze = gc.freeze
def counted():
    print("collections before the freeze:", len(collections), file=sys.stderr)
    freeze()
gc.freeze = counted
from cybermission.cli import main
sys.argv = ["cybermission", *sys.argv[1:]]
main()
"""


def test_cli_scan_starts_without_a_collection(tmp_path: Path) -> None:
    # Nothing listens on 127.53.2.1: the run succeeds with nothing found.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _COUNT_COLLECTIONS,
            "scan",
            "127.53.2.1",
            "--ports",
            "502",
            "--udp-ports",
            "none",
            "--format",
            "json",
        ],
        env={
            **os.environ,
            "CYBERMISSION_DATABASE_URL": store_url(tmp_path / "cli.db"),
            "CYBERMISSION_PACING__PROFILE": "lab",
            "CYBERMISSION_LOG_LEVEL": "WARNING",
        },
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scan"]["status"] == "succeeded"
    assert "collections before the freeze: 0" in done.stderr.splitlines()


async def test_cli_scan_accepts_a_dash_range(lab: dict[str, LabDevice], tmp_path: Path) -> None:
    addresses = sorted(d.address for d in lab.values())
    code, out, _ = await _cli(
        tmp_path, "scan", f"{addresses[0]}-{addresses[-1]}", "--ports", "502", "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["scan"]["hosts_probed"] == len(addresses)


async def test_cli_scan_out_of_scope_exits_nonzero_and_sends_nothing(
    lab: dict[str, LabDevice], tmp_path: Path
) -> None:
    code, _, err = await _cli(
        tmp_path, "scopes", "add", "cell-1", "127.50.3.0/24", "--reference", "CHG-1"
    )
    assert code == 0, err
    m340 = lab["modbus-plc-m340"]
    code, out, err = await _cli(tmp_path, "scan", m340.address, "--format", "json")
    assert code == 2
    assert out == ""
    assert m340.address in err
    assert "outside every authorised scope" in err
    assert m340.connections == 0


def test_cli_error_message_keeps_its_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    # Rich reads "[lab]" as markup: the install hint of a missing extra must survive.
    exit_ = fail(CybermissionError("pip install 'cybermission[lab]'"))
    assert exit_.exit_code == 2
    assert "pip install 'cybermission[lab]'" in capsys.readouterr().err


async def test_cli_scopes_add_refuses_the_whole_internet(tmp_path: Path) -> None:
    code, _, err = await _cli(tmp_path, "scopes", "add", "oops", "127.0.0.1/0")
    assert code == 2
    assert "127.0.0.1/0" in err
    code, out, _ = await _cli(tmp_path, "scopes", "list")
    assert "oops" not in out


async def test_cli_probes_prints_every_manifest(tmp_path: Path) -> None:
    code, out, _ = await _cli(tmp_path, "probes", "--format", "json")
    assert code == 0
    manifests = json.loads(out)
    for name, probe in load_probes().items():
        shown = manifests[name]
        assert shown["intrusiveness"] == str(probe.intrusiveness)
        assert {r["request"]: r["max_per_device"] for r in shown["requests"]} == {
            e.request: e.max_per_device for e in probe.manifest.entries
        }


async def test_cli_import_pcap_reports_the_capture_assets(tmp_path: Path) -> None:
    capture = shared_data("pcaps", "modbus", "mod_17.pcap")
    code, out, err = await _cli(tmp_path, "import", "pcap", str(capture), "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    (asset,) = report["assets"]
    assert asset["services"][0]["facts"]["server_id"] == "Wingpath Limited"


async def test_cli_allocations_add_list_remove(tmp_path: Path) -> None:
    # `sites add` (a global operator) allocates the site's networks to its organisation.
    code, _, err = await _cli(tmp_path, "sites", "add", "plant", "--scope", "127.50.3.0/24")
    assert code == 0, err
    code, out, err = await _cli(tmp_path, "allocations", "add", "default", "127.50.4.0/24")
    assert code == 0, err
    code, out, _ = await _cli(
        tmp_path, "allocations", "list", "--organization", "default", "--format", "jsonl"
    )
    assert [json.loads(line)["cidr"] for line in out.splitlines()] == [
        "127.50.3.0/24",
        "127.50.4.0/24",
    ]
    # The site's scope lies in the first: it cannot be withdrawn; the spare one can.
    code, _, err = await _cli(tmp_path, "allocations", "remove", "default", "127.50.3.0/24")
    assert code == 2
    assert "site-plant" in err
    code, _, err = await _cli(tmp_path, "allocations", "remove", "default", "127.50.4.0/24")
    assert code == 0, err
    code, out, _ = await _cli(tmp_path, "allocations", "list", "--format", "json")
    assert [row["cidr"] for row in json.loads(out)] == ["127.50.3.0/24"]
    # Like every other listing, a table by default.
    code, out, _ = await _cli(tmp_path, "allocations", "list")
    assert code == 0
    assert "127.50.3.0/24" in out
    assert "organization" in out


def test_cli_import_pcap_works_outside_the_repository(tmp_path: Path) -> None:
    """From an empty folder (no rules/ beside it): the packaged rules judge the capture."""
    capture = shared_data("pcaps", "modbus", "mod_17.pcap")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CYBERMISSION_")},
        "CYBERMISSION_DATABASE_URL": store_url(tmp_path / "cli.db"),
    }
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "cybermission", "import", "pcap", str(capture), "--format", "json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["assets"]
    assert "modbus-unauthenticated-reachable" in {f["rule_id"] for f in report["findings"]}
