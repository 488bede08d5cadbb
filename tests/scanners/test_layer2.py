"""Layer-2 discovery over a veth pair between two namespaces this test makes: simulated PROFINET
stations and LLDP neighbours (scapy, ``l2_responder.py``) and the far namespace's kernel answering
ARP; ``discover-l2`` must identify them, and send only DCP Identify and ARP who-has, only out of
the interface it was given, only when the guard authorises the segment."""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scanners.dcp import identify_request, parse_identify_response, parse_request
from scanners.layer2 import Layer2Discovery
from scanners.lldp import parse_lldpdu
from tests.cli.stores import store_url
from tests.conftest import shared_data
from tests.mirror import READY_WAIT_S, Mirror, mirror_link, require_mirror_tools

# TEST-NET-1 (RFC 5737), only ever on the veth pair inside the two namespaces of this test.
SENSOR_ADDRESS, NETWORK = "192.0.2.10/24", "192.0.2.0/24"
KERNEL_HOSTS = ("192.0.2.20", "192.0.2.21")  # answered by the far namespace's kernel (ARP)
STATIONS = [
    {"name": "plc-line-1", "type": "S7-1500", "vendor_id": 0x002A, "device_id": 0x010D,
     "role": 2, "mac": "02:00:5e:10:00:01", "ip": "192.0.2.30"},
    {"name": "et200sp-io-7", "type": "ET 200SP", "vendor_id": 0x002A, "device_id": 0x0313,
     "role": 1, "mac": "02:00:5e:10:00:02", "ip": "192.0.2.31"},
    {"name": "drive-unnamed", "type": "G120", "vendor_id": 0x002A, "device_id": 0x0502,
     "role": 1, "mac": "02:00:5e:10:00:03", "ip": None},
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Segment:
    mirror: Mirror
    log: Path
    env: dict[str, str]


def _netns(namespace: str, *command: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, *command], check=True, capture_output=True)


@pytest.fixture
def segment(tmp_path: Path) -> Iterator[Segment]:
    require_mirror_tools()
    with mirror_link() as mirror:
        _netns(mirror.sensor_namespace, "ip", "addr", "add", SENSOR_ADDRESS,
               "dev", mirror.sensor_interface)  # fmt: skip
        for host in KERNEL_HOSTS:
            _netns(mirror.replay_namespace, "ip", "addr", "add", f"{host}/24",
                   "dev", mirror.replay_interface)  # fmt: skip
        log = tmp_path / "responder.jsonl"
        responder = subprocess.Popen(
            ["ip", "netns", "exec", mirror.replay_namespace,
             str(Path.cwd() / ".venv/bin/python"), "-m", "tests.scanners.l2_responder",
             mirror.replay_interface, str(log), json.dumps(STATIONS)],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + READY_WAIT_S
            while not (log.exists() and "ready" in log.read_text()):
                assert responder.poll() is None, responder.communicate()[1]
                assert time.monotonic() < deadline, "the responder did not start"
                time.sleep(0.2)
            env = {"CYBERMISSION_DATABASE_URL": store_url(tmp_path / "l2.db")}
            yield Segment(mirror, log, env)
        finally:
            responder.kill()
            responder.communicate()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(".venv/bin/cybermission").resolve()), *args],
        env={**os.environ, **env}, capture_output=True, text=True, check=False,
    )  # fmt: skip


def _discover(segment: Segment, *extra: str) -> subprocess.CompletedProcess[str]:
    cli = str(Path(".venv/bin/cybermission").resolve())
    interface = segment.mirror.sensor_interface
    command = ["ip", "netns", "exec", segment.mirror.sensor_namespace, cli, "discover-l2",
               interface, "--format", "json", "--listen", "2", *extra]  # fmt: skip
    return subprocess.run(
        command, env={**os.environ, **segment.env}, capture_output=True, text=True, check=False
    )


def _authorise(segment: Segment) -> None:
    added = _cli(["scopes", "add", "segment", NETWORK], segment.env)
    assert added.returncode == 0, added.stderr


def _received(segment: Segment) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in segment.log.read_text().splitlines()]
    return [r for r in rows if "ready" not in r]


def test_discover_l2_identifies_profinet_stations_lldp_neighbours_and_arp(
    segment: Segment,
) -> None:
    _authorise(segment)
    result = _discover(segment)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_address = {address: a for a in report["assets"] for address in a["addresses"]}
    plc = {s["protocol"]: s["facts"] for s in by_address["192.0.2.30"]["services"]}
    assert plc["profinet"]["name_of_station"] == "plc-line-1"
    assert plc["profinet"]["type_of_station"] == "S7-1500"
    assert (plc["profinet"]["vendor_id"], plc["profinet"]["device_id"]) == ("002a", "010d")
    assert plc["profinet"]["role"] == "io-controller"
    assert plc["lldp"]["lldp_system_name"] == "plc-line-1"
    assert by_address["192.0.2.30"]["vendor"] == "Siemens"
    io = {s["protocol"]: s["facts"] for s in by_address["192.0.2.31"]["services"]}
    assert io["profinet"]["role"] == "io-device"
    # The far kernel answers for both its addresses with one MAC: one device, two addresses.
    (kernel,) = {by_address[host]["id"] for host in KERNEL_HOSTS}
    (arp,) = by_address[KERNEL_HOSTS[0]]["services"]
    assert arp["protocol"] == "arp"
    assert arp["facts"]["mac"]
    assert kernel
    # A station not commissioned yet (no IP) is listed, not put in the inventory.
    unaddressed = {u.get("name_of_station") for u in report["layer2"]["unaddressed"]}
    assert "drive-unnamed" in unaddressed
    assert report["layer2"]["sent"] == {"dcp/identify-all": 1, "arp/who-has": 253}
    # What went out is what the manifest declares, within its counts (ARP: one per address).
    declared = {e.request: e.max_per_device for e in Layer2Discovery.manifest.entries}
    assert report["layer2"]["sent"]["dcp/identify-all"] <= declared["dcp/identify-all"]
    assert set(report["layer2"]["sent"]) <= set(declared)


def test_discover_l2_sends_only_identify_and_arp(segment: Segment) -> None:
    _authorise(segment)
    assert _discover(segment).returncode == 0
    received = _received(segment)
    profinet = [r for r in received if r["type"] == "8892"]
    assert profinet == [
        {"dst": "01:0e:cf:00:00:00", "type": "8892", "frame_id": 0xFEFE, "service_id": 5,
         "service_type": 0}
    ]  # fmt: skip
    assert {r["type"] for r in received} <= {"8892", "0806"}  # nothing else: no IP, no LLDP


def test_discover_l2_by_name_finds_that_station_only(segment: Segment) -> None:
    _authorise(segment)
    result = _discover(segment, "--station", "et200sp-io-7", "--no-arp")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    names = {
        s["facts"].get("name_of_station")
        for a in report["assets"]
        for s in a["services"]
        if s["protocol"] == "profinet"
    }
    assert names == {"et200sp-io-7"}
    assert report["layer2"]["sent"] == {"dcp/identify-name": 1}


def test_discover_l2_refuses_a_segment_not_authorised(segment: Segment) -> None:
    # Only part of the subnet is authorised: the multicast Identify would reach the rest.
    added = _cli(["scopes", "add", "part", "192.0.2.0/25"], segment.env)
    assert added.returncode == 0, added.stderr
    result = _discover(segment)
    assert result.returncode == 2
    assert "not authorised" in result.stderr
    assert _received(segment) == []


def test_discover_l2_arp_asks_only_for_allowed_addresses(segment: Segment) -> None:
    added = _cli(["scopes", "add", "part", "192.0.2.0/27", "--exclude", "192.0.2.21/32"],
                 segment.env)  # fmt: skip
    assert added.returncode == 0, added.stderr
    result = _discover(segment, "--no-dcp")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    answered = {
        a["addresses"][0]
        for a in report["assets"]
        if {s["protocol"] for s in a["services"]} == {"arp"}
    }
    assert answered == {"192.0.2.20"}  # .21 is excluded: never asked
    assert report["layer2"]["sent"] == {"arp/who-has": 29}  # .1-.31 less .10 (own) and .21
    asked = {r["asked"] for r in _received(segment) if r["type"] == "0806"}
    expected = {f"192.0.2.{i}" for i in range(1, 32)} - {"192.0.2.10", "192.0.2.21"}
    assert asked == expected


def test_dcp_parser_reads_a_real_station_and_builds_only_identify() -> None:
    from scapy.utils import RawPcapReader

    found = []
    with RawPcapReader(str(shared_data("pcaps", "profinet", "profinet_dcp.pcap"))) as reader:
        for frame, _meta in reader:
            facts = parse_identify_response(bytes(frame))
            if facts:
                found.append(facts)
    assert found[0]["name_of_station"] == "X208-BORD"
    assert found[0]["ip"] == "192.168.0.6"
    request = parse_request(identify_request(bytes(6), 1, "plc-line-1"))
    assert request is not None
    assert (request.service_id, request.service_type, request.name) == (5, 0, "plc-line-1")


def test_lldp_parser_reads_a_real_neighbour() -> None:
    from scapy.utils import RawPcapReader

    with RawPcapReader(str(shared_data("pcaps", "profinet", "profinet_failed.pcap"))) as reader:
        neighbours = [f for frame, _ in reader if (f := parse_lldpdu(bytes(frame)))]
    names = {n.get("lldp_system_name") for n in neighbours}
    assert "SCADA-PC-060839" in names
