"""``import nmap``: real nmap XML (-sV and the ICS scripts) of the lab simulators on 127.62.0.x
gives the identities the built-in engine gives where both saw the same answers."""

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cybermission.errors import ValidationError
from scanners.lab.building_devices import bacnet_lab_devices
from scanners.lab.enip_devices import enip_lab_devices
from scanners.lab.modbus_devices import modbus_lab_devices
from scanners.lab.runner import listening
from scanners.lab.s7_devices import s7_lab_devices
from scanners.nmap_xml import parse_nmap_report
from tests.cli.stores import store_url

BASE = "127.62.0.0"
IDENTITY = ("vendor", "model", "firmware", "serial")
SCRIPTS = "modbus-discover,s7-info,enip-info,bacnet-info"

needs_nmap = pytest.mark.skipif(
    shutil.which("nmap") is None and os.environ.get("CYBERMISSION_TEST_REQUIRE_POSTGRES") != "1",
    reason="Debian's nmap is not installed here (.ci/run installs it)",
)


@pytest.fixture
async def lab() -> AsyncIterator[list[str]]:
    devices: list[Any] = [
        *modbus_lab_devices(BASE)[:3],
        *s7_lab_devices(BASE)[:2],
        *enip_lab_devices(BASE),
        *bacnet_lab_devices(BASE),
    ]
    async with listening(devices):
        yield sorted({d.address for d in devices})


async def _run(*command: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def _cli(store: Path, *args: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "CYBERMISSION_DATABASE_URL": store_url(store),
        "CYBERMISSION_PACING__PROFILE": "lab",
        "CYBERMISSION_LOG_LEVEL": "WARNING",
    }
    code, out, err = await _run(sys.executable, "-m", "cybermission", *args, env=env)
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def _identities(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        address: {k: a[k] for k in IDENTITY if a.get(k)}
        for a in report["assets"]
        for address in a["addresses"]
    }


def _services(report: dict[str, Any]) -> set[tuple[str, int, str]]:
    return {
        (address, s["port"], s["protocol"])
        for a in report["assets"]
        for address in a["addresses"]
        for s in a["services"]
    }


def _unseen_by_nmap(asset: dict[str, Any]) -> set[str]:
    """Identity our probes read from answers nmap's scripts never ask for: modbus-discover reads
    the basic identification objects only, our probe also reads the regular ones (model name)."""
    modbus = [s["facts"] for s in asset["services"] if s["protocol"] == "modbus"]
    return {"model"} if any("model" in facts for facts in modbus) else set()


@needs_nmap
async def test_import_nmap_gives_the_built_in_identities(lab: list[str], tmp_path: Path) -> None:
    xml = Path(os.environ.get("NMAP_XML_KEEP", tmp_path / "lab.xml"))
    code, _, err = await _run(
        "nmap", "-n", "-Pn", "-sT", "-sU", "-sV", "--version-light",
        "-p", "T:502,102,44818,U:47808,U:44818", "--script", SCRIPTS, "-oX", str(xml), *lab,
    )  # fmt: skip
    assert code == 0, err
    imported = await _cli(tmp_path / "nmap.db", "import", "nmap", str(xml), "--format", "json")
    scanned = await _cli(
        tmp_path / "scan.db",
        "scan", *lab, "--ports", "502,102,44818", "--udp-ports", "47808,44818", "--format", "json",
    )  # fmt: skip
    by_nmap, by_us = _identities(imported), _identities(scanned)
    unseen = {a: _unseen_by_nmap(asset) for asset in scanned["assets"] for a in asset["addresses"]}
    compared: dict[str, int] = {}
    differ = []
    for address, ours in by_us.items():
        theirs = by_nmap.get(address, {})
        for attr in IDENTITY:
            if attr in ours and attr in theirs and attr not in unseen[address]:
                compared[attr] = compared.get(attr, 0) + 1
                if theirs[attr] != ours[attr]:
                    differ.append((address, attr, theirs[attr], ours[attr]))
    assert differ == [], differ
    # The four ICS scripts answered for most devices: vendors, models, firmware and serials.
    assert compared.get("vendor", 0) >= 6, (compared, by_nmap)
    assert compared.get("firmware", 0) >= 4, (compared, by_nmap)
    assert compared.get("serial", 0) >= 2, (compared, by_nmap)
    # Every service is named by the protocol our probes give it (BACnet too, whose lab devices
    # answer nmap's bacnet-info with an error: nothing of its identity to compare).
    assert _services(imported) == _services(scanned)
    rules = {f["rule_id"] for f in imported["findings"]}
    assert "modbus-unauthenticated-reachable" in rules


def test_parse_refuses_entity_expansion() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><nmaprun>&a;</nmaprun>'
    with pytest.raises(ValidationError, match="not valid XML"):
        list(parse_nmap_report(bomb))


def test_parse_refuses_another_document() -> None:
    with pytest.raises(ValidationError, match="not <nmaprun>"):
        list(parse_nmap_report(b"<html></html>"))


def test_parse_skips_hosts_down_and_closed_ports() -> None:
    report = b"""<nmaprun start="1700000000">
      <host><status state="down"/><address addr="127.0.0.9" addrtype="ipv4"/></host>
      <host><status state="up"/><address addr="127.0.0.8" addrtype="ipv4"/>
        <ports>
          <port protocol="tcp" portid="502"><state state="closed"/></port>
          <port protocol="tcp" portid="22"><state state="open"/>
            <service name="ssh" product="OpenSSH" version="9.2p1"/></port>
        </ports></host></nmaprun>"""
    (observation,) = parse_nmap_report(report)
    assert (observation.address, observation.port, observation.protocol) == ("127.0.0.8", 22, "ssh")
    assert observation.facts["nmap_product"] == "OpenSSH"
    assert "product" not in observation.facts  # software is not the device's identity
