"""Triage from the console script (a real process): findings list/set and assets criticality.

One scan of two lab Modbus devices on 127.50.9.x fills a store; each test works on its own copy.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, create_engine

from cybermission.findings.models import FindingStatus
from cybermission.findings.service import list_transitions
from cybermission.inventory.models import Criticality, Device
from scanners.lab.modbus_devices import LabDevice, modbus_lab_devices
from tests.cli.stores import store_url

BASE = "127.50.9.0"
TARGET = "127.50.9.0/28"
REACHABLE = "modbus-unauthenticated-reachable"


def _env(db: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CYBERMISSION_DATABASE_URL": store_url(db),
        "CYBERMISSION_PACING__PROFILE": "lab",
        "CYBERMISSION_LOG_LEVEL": "WARNING",
    }


def cli(db: Path, *args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "cybermission", *args],
        env=_env(db),
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


async def acli(db: Path, *args: str) -> tuple[int, str, str]:
    """The same, while this event loop keeps lab devices answering."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cybermission",
        *args,
        env=_env(db),
        cwd=Path.cwd(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def _devices() -> list[LabDevice]:
    return modbus_lab_devices(BASE)[:2]


async def _scan(db: Path) -> dict[str, Any]:
    devices = _devices()
    for device in devices:
        await device.start()
    try:
        code, out, err = await acli(db, "scan", TARGET, "--ports", "502", "--format", "json")
    finally:
        for device in devices:
            await device.stop()
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    db = tmp_path_factory.mktemp("triage") / "scanned.db"
    report = asyncio.run(_scan(db))
    assert {f["rule_id"] for f in report["findings"]} >= {REACHABLE}
    # The CLI closed its store: the write-ahead log is in the file (the tests copy the file).
    assert not db.with_name(f"{db.name}-wal").exists()
    return db, report


@pytest.fixture
def store(scanned: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    db = tmp_path / "store.db"
    shutil.copyfile(scanned[0], db)
    return db


@pytest.fixture
def report(scanned: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    return scanned[1]


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _one(report: dict[str, Any], rule_id: str = REACHABLE) -> dict[str, Any]:
    return next(f for f in report["findings"] if f["rule_id"] == rule_id)


def test_triage_list_shows_every_finding_of_the_scan(store: Path, report: dict[str, Any]) -> None:
    code, out, _ = cli(store, "findings", "list", "--format", "jsonl")
    assert code == 0
    rows = _lines(out)
    assert sorted(r["id"] for r in rows) == sorted(f["id"] for f in report["findings"])
    assert all(r["decision"] in ("act", "attend", "track") for r in rows)


def test_triage_list_json_is_one_array_of_the_jsonl_rows(store: Path) -> None:
    _, document, _ = cli(store, "findings", "list", "--format", "json")
    _, lines, _ = cli(store, "findings", "list", "--format", "jsonl")
    assert json.loads(document) == _lines(lines) != []


def test_triage_list_filters_by_rule_severity_and_status(
    store: Path, report: dict[str, Any]
) -> None:
    code, out, _ = cli(
        store,
        "findings",
        "list",
        "--rule",
        REACHABLE,
        "--severity",
        "high",
        "--status",
        "open",
        "--format",
        "jsonl",
    )
    assert code == 0
    rows = _lines(out)
    assert {(r["rule_id"], r["severity"], r["status"]) for r in rows} == {
        (REACHABLE, "high", "open")
    }
    assert len(rows) == sum(f["rule_id"] == REACHABLE for f in report["findings"]) == 2
    cli(store, "findings", "set", "acknowledged", rows[0]["id"], "--actor", "alice")
    _, out, _ = cli(store, "findings", "list", "--status", "acknowledged", "--format", "jsonl")
    assert [r["id"] for r in _lines(out)] == [rows[0]["id"]]


def test_triage_list_filters_by_confidence(store: Path, report: dict[str, Any]) -> None:
    # The lab scan's findings are rules' (no confidence): a confidence filter keeps none of them.
    code, out, _ = cli(store, "findings", "list", "--confidence", "high", "--format", "jsonl")
    assert code == 0
    assert _lines(out) == []
    _, out, _ = cli(store, "findings", "list", "--format", "jsonl")
    assert all(r["confidence"] is None for r in _lines(out))


def test_triage_list_table_names_the_findings(store: Path, report: dict[str, Any]) -> None:
    code, out, err = cli(store, "findings", "list", "--limit", "1")
    assert code == 0
    _, listed, _ = cli(store, "findings", "list", "--limit", "1", "--format", "jsonl")
    (first,) = _lines(listed)
    assert first["id"] in out
    assert first["device_id"] in out
    assert first["rule_id"] in out
    assert "1 findings" in err


def test_triage_set_risk_accepted_is_audited_with_its_expiry(
    store: Path, report: dict[str, Any]
) -> None:
    finding = _one(report)
    code, out, err = cli(
        store,
        "findings",
        "set",
        "risk-accepted",
        finding["id"],
        "--reason",
        "pump replaced in March",
        "--until",
        "2099-01-01",
        "--actor",
        "alice",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "risk-accepted"
    assert result["from_status"] == "open"
    assert result["accepted_until"] == "2099-01-01T00:00:00+00:00"
    with Session(create_engine(f"sqlite:///{store}")) as session:
        trail = list_transitions(session, finding_id=finding["id"])
    last = trail[-1]
    assert (last.from_status, last.to_status) == (
        FindingStatus.OPEN,
        FindingStatus.RISK_ACCEPTED,
    )
    assert (last.actor, last.reason) == ("alice", "pump replaced in March")


def test_triage_set_risk_accepted_needs_an_expiry(store: Path, report: dict[str, Any]) -> None:
    code, out, err = cli(
        store, "findings", "set", "risk-accepted", _one(report)["id"], "--reason", "later"
    )
    assert code == 1
    assert "until: a risk acceptance needs an expiry" in err
    assert out == ""


def test_triage_set_refuses_a_bad_expiry(store: Path, report: dict[str, Any]) -> None:
    finding_id = _one(report)["id"]
    args = ("findings", "set", "risk-accepted", finding_id, "--reason", "r", "--until")
    code, _, err = cli(store, *args, "next spring")
    assert code == 1
    assert "until: expected an ISO 8601 date or time" in err


def test_triage_set_refuses_a_move_not_allowed(store: Path, report: dict[str, Any]) -> None:
    finding_id = _one(report)["id"]
    code, _, _ = cli(store, "findings", "set", "resolved", finding_id, "--reason", "patched")
    assert code == 0
    code, _, err = cli(store, "findings", "set", "acknowledged", finding_id)
    assert code == 1
    assert "a resolved finding cannot become acknowledged (allowed: open)" in err


def test_triage_set_false_positive_needs_a_reason(store: Path, report: dict[str, Any]) -> None:
    code, _, err = cli(store, "findings", "set", "false-positive", _one(report)["id"])
    assert code == 1
    assert "reason: expected why the finding is false-positive" in err


def test_triage_set_unknown_finding_exits_2(store: Path) -> None:
    code, _, err = cli(store, "findings", "set", "acknowledged", "no-such-id")
    assert code == 2
    assert "no finding with id 'no-such-id'" in err


def test_assets_criticality_refuses_unknown_levels_and_devices(
    store: Path, report: dict[str, Any]
) -> None:
    device_id = _one(report)["asset_id"]
    code, _, err = cli(store, "assets", "criticality", device_id, "vital")
    assert code == 1
    assert "criticality: expected one of low, medium, high, critical, got 'vital'" in err
    code, _, err = cli(store, "assets", "criticality", "no-such-device", "high")
    assert code == 2
    assert "no device with id 'no-such-device'" in err


@pytest.fixture
async def lab() -> AsyncIterator[list[LabDevice]]:
    devices = _devices()
    for device in devices:
        await device.start()
    try:
        yield devices
    finally:
        for device in devices:
            await device.stop()


async def test_assets_criticality_is_kept_and_weighs_the_next_scan(
    lab: list[LabDevice], store: Path, report: dict[str, Any]
) -> None:
    before = _one(report)
    device_id = before["asset_id"]
    code, out, _ = await acli(store, "assets", "criticality", device_id, "critical")
    assert (code, json.loads(out)) == (0, {"id": device_id, "criticality": "critical"})
    code, out, err = await acli(store, "scan", TARGET, "--ports", "502", "--format", "json")
    assert code == 0, err
    with Session(create_engine(f"sqlite:///{store}")) as session:
        device = session.get(Device, device_id)
        assert device is not None
        assert device.criticality is Criticality.CRITICAL
    code, out, _ = await acli(
        store, "findings", "list", "--rule", REACHABLE, "--device", device_id, "--format", "jsonl"
    )
    (after,) = _lines(out)
    assert after["id"] == before["id"]
    # Criticality "critical" weighs x1.3 (rules/README.md, Score).
    assert after["score"] == pytest.approx(min(10.0, round(before["score"] * 1.3, 1)), abs=0.11)
