"""Benchmark: every device of ``cybermission lab``, identified by cybermission and by nmap.

    python -m bench.lab [--base 127.77.0.0] [--no-nmap]

The lab runs in its own process (``python -m scanners.lab``) on ``--base``. The expected identity of
each device is what the lab's state file declares (vendor, model, firmware, serial, names...).
cybermission scans every lab address with the ``lab`` pacing profile (TCP ports of the lab plus
every port the probes declare, UDP ports likewise); the peer is ``nmap -n -Pn -sT -sV`` with its ICS
scripts on the same TCP ports, and ``-sU`` with the UDP ICS scripts on the UDP ports. A field counts
as found when its value appears in what the tool reports for that device's address
(case-insensitive).
Prints wall times, fields found by each tool, and the fields only one of them found.
"""

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlmodel import Session, SQLModel, select

from cybermission import models  # noqa: F401
from cybermission.config import PacingProfile, PacingSettings, load_settings
from cybermission.db import create_db_engine
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.inventory.models import Device, IPAddress, Service
from cybermission.probes import Transport, resolve_ports
from cybermission.scans.pipeline import execute_scan
from cybermission.scans.service import create_scan_run

NMAP_TCP_SCRIPTS = "modbus-discover,s7-info,enip-info,fox-info,iec-identify,omron-info,pcworx-info"
NMAP_UDP_SCRIPTS = "bacnet-info,enip-info,knx-gateway-info,coap-resources,snmp-sysdescr"
SKIP_FIELDS = {"objects", "units", "kind", "protocol"}
OPT_IN_READS = ["modbus-units", "dnp3-attributes", "iec104-interrogation"]
UDP_PROTOCOLS = {"bacnet", "snmp", "knx", "coap", "enip-udp", "fins-udp", "melsec-udp", "hart-udp"}


def _values(identity: Any) -> Iterator[str]:
    """Every leaf string (or number) of a device's declared identity."""
    if isinstance(identity, dict):
        for key, value in identity.items():
            if key not in SKIP_FIELDS or isinstance(value, dict):
                yield from _values(value)
    elif isinstance(identity, list):
        for item in identity:
            yield from _values(item)
    elif isinstance(identity, str | int) and not isinstance(identity, bool):
        text = str(identity).strip()
        if len(text) >= 3:
            yield text


def _start_lab(base: str, state: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanners.lab", "--base", base, "--state-file", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the lab did not start")
        time.sleep(0.2)
    return proc


def _ours(
    devices: list[dict[str, Any]], tcp: list[int], udp: list[int]
) -> tuple[float, dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            database_url=f"sqlite:///{tmp}/bench.db",
            pacing=PacingSettings(profile=PacingProfile.LAB),
            # The read-only opt-in probes a lab may use; nothing that writes or loads a device.
            enabled_optional_probes=OPT_IN_READS,
        )
        engine = create_db_engine(settings.database_url)
        SQLModel.metadata.create_all(engine)
        addresses = sorted({d["address"] for d in devices})
        guard = ScopeGuard([ScopeRule.build("bench-lab", [f"{a}/32" for a in addresses])])
        with Session(engine) as session:
            run = create_scan_run(
                session,
                guard=guard,
                targets=addresses,
                ports=tcp,
                udp_ports=udp,
                settings=settings,
                requested_by="bench",
            )
            session.commit()
            run_id = run.id
        started = time.perf_counter()
        asyncio.run(execute_scan(engine=engine, settings=settings, scan_run_id=run_id, guard=guard))
        elapsed = time.perf_counter() - started
        text: dict[str, str] = {}
        with Session(engine) as session:
            for ip in session.exec(select(IPAddress)).all():
                device = session.get(Device, ip.device_id)
                services = session.exec(select(Service).where(Service.device_id == ip.device_id))
                parts = [json.dumps(s.facts, ensure_ascii=False) for s in services]
                if device is not None:
                    parts.append(json.dumps(device.model_dump(mode="json"), ensure_ascii=False))
                    children = session.exec(select(Device).where(Device.parent_id == device.id))
                    parts += [
                        json.dumps(c.model_dump(mode="json"), ensure_ascii=False) for c in children
                    ]
                text[ip.address] = " ".join(parts).lower()
        engine.dispose()
    return elapsed, text


def _nmap(addresses: list[str], tcp: list[int], udp: list[int]) -> tuple[float, dict[str, str]]:
    text: dict[str, str] = {a: "" for a in addresses}
    started = time.perf_counter()
    runs = [["-sT", "-sV", "-p", ",".join(map(str, tcp)), "--script", NMAP_TCP_SCRIPTS]]
    if udp:
        runs.append(["-sU", "-p", ",".join(map(str, udp)), "--script", NMAP_UDP_SCRIPTS])
    for extra in runs:
        out = subprocess.run(
            ["nmap", "-n", "-Pn", "-T4", "-oX", "-", *extra, *addresses],
            capture_output=True,
            check=False,
        ).stdout
        for host in ET.fromstring(out).iter("host"):
            address = host.find("address")
            if address is None:
                continue
            chunks = [ET.tostring(port, encoding="unicode") for port in host.iter("port")]
            text[address.get("addr", "")] += " ".join(chunks).lower()
    return time.perf_counter() - started, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="127.77.0.0")
    parser.add_argument("--no-nmap", action="store_true")
    args = parser.parse_args()
    if not args.base.startswith("127."):
        raise SystemExit("the benchmark only runs on 127.0.0.0/8")
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "lab.json"
        lab = _start_lab(args.base, state)
        try:
            devices: list[dict[str, Any]] = json.loads(state.read_text())["devices"]
            udp_ports = {d["port"] for d in devices if d["protocol"] in UDP_PROTOCOLS}
            tcp = sorted(
                {d["port"] for d in devices if d["protocol"] not in UDP_PROTOCOLS}
                | set(resolve_ports(None, Transport.TCP))
            )
            udp = sorted(udp_ports | set(resolve_ports(None, Transport.UDP)))
            expected = {(d["address"], v.lower()) for d in devices for v in _values(d["identity"])}
            ours_s, ours = _ours(devices, tcp, udp)
            found_ours = {(a, v) for a, v in expected if v in ours.get(a, "")}
            print(f"lab: {len(devices)} devices, {len(expected)} identity fields declared")
            print(f"cybermission: {ours_s:6.2f} s, {len(found_ours)} fields found")
            if not args.no_nmap and shutil.which("nmap"):
                addresses = sorted({d["address"] for d in devices})
                nmap_s, theirs = _nmap(addresses, tcp, udp)
                found_nmap = {(a, v) for a, v in expected if v in theirs.get(a, "")}
                print(f"nmap -sV + ICS scripts: {nmap_s:6.2f} s, {len(found_nmap)} fields found")
                print(f"time ratio cybermission/nmap: {ours_s / nmap_s:.2f}")
                print(
                    f"only cybermission: {len(found_ours - found_nmap)}, "
                    f"only nmap: {sorted(found_nmap - found_ours)[:20]}"
                )
            missed = sorted(expected - found_ours)
            print(f"missed by cybermission ({len(missed)}): {missed[:40]}")
        finally:
            lab.send_signal(signal.SIGTERM)
            lab.wait(timeout=30)


if __name__ == "__main__":
    main()
