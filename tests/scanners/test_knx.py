"""Tests of the KNXnet/IP probe against the spec-built lab responder and spec-built frames."""

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import (
    ProbeTarget,
    RequestLedger,
)
from scanners.knx import (
    MAX_DIBS,
    MAX_TEXT_BYTES,
    REQUEST_DESCRIPTION,
    KnxProbe,
    decode_response,
    description_request,
    individual_address,
    split_dibs,
)
from scanners.lab.urban_devices import (
    KnxIdentity,
    classify_knx,
    knx_description_response,
    knx_lab_devices,
)
from scanners.pcap import PcapReaderImporter
from tests.scanners.building_fixtures import run_devices
from tests.timing import scaled

BASE = "127.26.3.0"
SCOPE = "127.26.0.0/16"
TIMEOUT_S = scaled(1.0)
ROUTER = KnxIdentity(
    friendly_name="KNX IP Router Lobby",
    individual_address=(1, 1, 0),
    serial=bytes.fromhex("00831a2b3c4d"),
    mac=bytes.fromhex("00246d0102a1"),
    project_installation=(42 << 4) | 1,
    manufacturer_id=131,
    current_ip=("127.26.3.124", "255.255.255.0", "127.26.3.1"),
)


def _target(device: Any, probe: KnxProbe, scope: str = SCOPE) -> ProbeTarget:
    connector = Connector(ScopeGuard([ScopeRule.build("knx-tests", [scope])]))
    return ProbeTarget(
        device.address,
        device.port,
        probe.transport,
        connector,
        RequestLedger(probe.name, probe.manifest),
    )


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    async for devices in run_devices(knx_lab_devices(BASE, misfits=True)):
        yield devices


async def test_knx_probe_reads_every_dib_of_an_ip_router(lab: dict[str, Any]) -> None:
    device, probe = lab["knx-ip-router"], KnxProbe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts == {
        "dib_types": [0x01, 0x02, 0x04, 0xFE],
        "knx_medium": "TP1",
        "programming_mode": False,
        "knx_address": "1.1.0",
        "project_id": 42,
        "installation_id": 1,
        "serial": "0083:1a2b3c4d",
        "multicast_address": "224.0.23.12",
        "mac": "00:24:6d:01:02:a1",
        "friendly_name": "KNX IP Router Lobby",
        "instance_name": "KNX IP Router Lobby",
        "service_families": {"core": 2, "device-management": 2, "tunnelling": 2, "routing": 2},
        "knx_secure": False,
        "ip_address": "127.26.3.124",
        "subnet_mask": "255.255.255.0",
        "default_gateway": "127.26.3.1",
        "ip_assignment": "manual",
        "manufacturer_id": 131,
        "vendor": "MDT technologies",
        "manufacturer_data": "0001",
    }
    assert observation.protocol == "knxnet-ip"


async def test_knx_probe_identifies_an_interface_without_manufacturer_dib(
    lab: dict[str, Any],
) -> None:
    device, probe = lab["knx-ip-interface"], KnxProbe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert "vendor" not in observation.facts
    assert observation.facts["service_families"] == {
        "core": 1,
        "device-management": 1,
        "tunnelling": 1,
    }


@pytest.mark.parametrize("name", ["knx-ip-router", "knx-ip-interface"])
async def test_knx_probe_sends_one_nat_mode_description_request(
    lab: dict[str, Any], name: str
) -> None:
    device, probe = lab[name], KnxProbe()
    target = _target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    # The lab names a request with any other HPAI "description-request/route-back".
    assert device.requests == [REQUEST_DESCRIPTION] == list(target.ledger.sent.elements())
    assert device.bytes_received == len(description_request())


async def test_knx_probe_raises_timeout_on_silent_device(lab: dict[str, Any]) -> None:
    device, probe = lab["knx-silent"], KnxProbe()
    target = _target(device, probe)
    async with asyncio.timeout(scaled(10)):
        with pytest.raises(ProbeTimeoutError):
            await probe.observe(target, timeout_s=0.3)
    assert device.requests == [REQUEST_DESCRIPTION]
    assert dict(target.ledger.sent) == {REQUEST_DESCRIPTION: 1}  # no retransmission


def test_knx_description_request_is_the_spec_frame_with_a_nat_hpai() -> None:
    # Header 06 10 0203 000e, HPAI 08 01 0.0.0.0:0 (03.08.02 §8.6.2, §8.6.3.3).
    assert description_request() == bytes.fromhex("06100203000e" + "0801" + "00000000" + "0000")
    assert classify_knx(description_request()) == REQUEST_DESCRIPTION


def test_knx_individual_address_is_area_line_device() -> None:
    assert individual_address(0x11FA) == "1.1.250"
    assert individual_address(0xFFFF) == "15.15.255"


def test_knx_decoder_reads_a_search_response_too() -> None:
    description = knx_description_response(ROUTER)
    dibs = description[6:]
    hpai = bytes.fromhex("08017f1a037c0e57")
    search = struct.pack(">BBHH", 6, 0x10, 0x0202, 6 + len(hpai) + len(dibs)) + hpai + dibs
    assert KnxProbe().decode_answer(search) == decode_response(description)
    assert KnxProbe().decode_answer(description_request()) is None


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (bytes.fromhex("0510020400060000"), "header size"),
        (bytes.fromhex("061102040006"), "version"),
        (bytes.fromhex("061002040010"), "total length"),
        (bytes.fromhex("06100205000e0801000000000000"), "not a description"),
        (bytes.fromhex("0610020400080202"), "device information"),
        (bytes.fromhex("06100204000a3601aaaa"), "truncated"),
        (bytes.fromhex("061002040009010100"), "truncated"),
    ],
)
def test_knx_decoder_rejects_malformed_frames(frame: bytes, reason: str) -> None:
    with pytest.raises(ProbeProtocolError, match=reason):
        decode_response(frame)


def test_knx_decoder_bounds_dibs_and_names() -> None:
    with pytest.raises(ProbeProtocolError, match="more than"):
        split_dibs(b"\x02\x07" * (MAX_DIBS + 1))
    named = KnxIdentity("\xe9" * 40, (1, 1, 1), bytes(6), bytes.fromhex("0050c2000001"))
    facts = decode_response(knx_description_response(named))
    assert facts["friendly_name"] == "\xe9" * 30  # Latin-1, 30 octets (§7.5.4.2)
    assert len(str(facts["friendly_name"])) <= MAX_TEXT_BYTES


def test_knx_pcap_import_builds_the_router_from_a_search_response(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    path = tmp_path / "knx.pcap"
    # Recorded addresses are data: the importer never contacts them.
    wrpcap(
        str(path),
        [
            Ether()
            / IP(src="127.26.9.1", dst="127.26.9.4")
            / UDP(sport=40002, dport=3671)
            / description_request(),
            Ether()
            / IP(src="127.26.9.4", dst="127.26.9.1")
            / UDP(sport=3671, dport=40002)
            / knx_description_response(ROUTER),
        ],
    )
    observations = list(PcapReaderImporter().observations(path, [KnxProbe()]))
    assert [(o.address, o.protocol) for o in observations] == [("127.26.9.4", "knxnet-ip")]
    assert observations[0].facts["mac"] == "00:24:6d:01:02:a1"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_knx_decoder_only_raises_protocol_errors_on_random_bytes(data: bytes) -> None:
    framed = struct.pack(">BBHH", 6, 0x10, 0x0204, 6 + len(data)) + data
    for frame in (data, framed):
        with contextlib.suppress(ProbeProtocolError):
            KnxProbe().decode_answer(frame)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=120), st.binary(min_size=1, max_size=4))
def test_knx_decoder_survives_mutated_descriptions(position: int, junk: bytes) -> None:
    frame = bytearray(knx_description_response(ROUTER))
    position %= len(frame)
    frame[position : position + len(junk)] = junk
    with contextlib.suppress(ProbeProtocolError):
        facts = decode_response(bytes(frame))
        name = facts.get("friendly_name", "")
        assert isinstance(name, str)
        assert name.isprintable()
