"""Tests of the DNP3 probes against dnp3-outstation lab devices and the real dnp3/ captures."""

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.probes import (
    Probe,
)
from scanners.dnp3 import (
    MAX_TEXT_BYTES,
    REQUEST_ATTRIBUTES,
    REQUEST_LINK_STATUS,
    AttributesAnswer,
    Dnp3AttributesProbe,
    Dnp3Probe,
    LinkFrame,
    attribute_facts,
    attributes_read_request,
    crc_dnp,
    decode_attributes_response,
    decode_link_frame,
    frame_size,
    request_link_status,
)
from scanners.lab.dnp3_devices import Dnp3LabDevice, ReceivedFrame, dnp3_lab_devices
from tests.conftest import shared_data
from tests.scanners.industrial_fixtures import (
    IcsTargetFactory,
    ics_connector,
    ics_target,
    tcp_streams,
)
from tests.timing import scaled

__all__ = ["ics_connector", "ics_target"]  # fixtures used by name below

TIMEOUT_S = scaled(2.0)
LAB_BASE = "127.22.2.0"
FAST = {"dnp3_link_wait_s": 0.15}
NAMES = ["dnp3-rtu-sel3530", "dnp3-ied-ge-d20", "dnp3-water-scadapack"]
# Captures of requests a scanner must never send (operate, restart, freeze, write, time sync).
DANGEROUS_CAPTURES = [
    "cold_restart_and_response.pcap",
    "warm_restart_and_response.pcap",
    "directoperate_and_response.pcap",
    "select_operate_and_responses.pcap",
    "operate_aggressive_mode.pcap",
    "immediate_freeze.pcap",
    "write_binary_output.pcap",
    "write_iin_and_response.pcap",
    "lan_time_sync.pcap",
]


@pytest.fixture
async def dnp3_lab() -> AsyncIterator[dict[str, Dnp3LabDevice]]:
    devices = dnp3_lab_devices(LAB_BASE)
    try:
        for device in devices:
            await device.start()
        yield {device.name: device for device in devices}
    finally:
        for device in devices:
            await device.stop()


def _frames(path: Path) -> list[LinkFrame]:
    frames = []
    for stream in tcp_streams(path):
        data, offset = stream.data, 0
        while offset + 10 <= len(data):
            size = frame_size(data[offset : offset + 10])
            frames.append(decode_link_frame(data[offset : offset + size]))
            offset += size
    return frames


def _app_function(frame: LinkFrame) -> int | None:
    """Application function code: after the transport byte and the application control."""
    return frame.user_data[2] if len(frame.user_data) > 2 else None


def _request_name(frame: ReceivedFrame) -> str:
    if frame.link_function == 9:
        return REQUEST_LINK_STATUS
    if frame.app_function == 1 and frame.objects and all(g == 0 for g, _ in frame.objects):
        return REQUEST_ATTRIBUTES
    return f"link{frame.link_function}/app{frame.app_function}"


@pytest.mark.parametrize("name", NAMES)
async def test_dnp3_probe_learns_outstation_and_master_addresses(
    dnp3_lab: dict[str, Dnp3LabDevice], ics_target: IcsTargetFactory, name: str
) -> None:
    device = dnp3_lab[name]
    target = ics_target(device.address, device.port, Dnp3Probe(), dict(FAST))
    observation = await Dnp3Probe().observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["outstation_address"] == device.outstation_address
    assert observation.facts["master_address"] == device.master_address
    assert "vendor" not in observation.facts


async def test_dnp3_probe_reaches_broadcast_answering_outstation_in_one_request(
    dnp3_lab: dict[str, Dnp3LabDevice], ics_target: IcsTargetFactory
) -> None:
    device = dnp3_lab["dnp3-rtu-sel3530"]
    target = ics_target(device.address, device.port, Dnp3Probe(), dict(FAST))
    observation = await Dnp3Probe().observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["addresses_tried"] == [0xFFFF]
    assert dict(target.ledger.sent) == {REQUEST_LINK_STATUS: 1}


@pytest.mark.parametrize("name", NAMES)
async def test_dnp3_attributes_probe_reads_vendor_model_firmware_serial(
    dnp3_lab: dict[str, Dnp3LabDevice], ics_target: IcsTargetFactory, name: str
) -> None:
    device = dnp3_lab[name]
    target = ics_target(device.address, device.port, Dnp3AttributesProbe(), dict(FAST))
    observation = await Dnp3AttributesProbe().observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.probe == "dnp3-attributes"


def test_dnp3_attributes_probe_is_opt_in() -> None:
    assert Dnp3AttributesProbe.optional is True
    assert Dnp3Probe.optional is False
    assert Dnp3Probe.manifest.limit(REQUEST_ATTRIBUTES) == 0


@pytest.mark.parametrize(
    ("name", "probe_cls"),
    [(n, Dnp3Probe) for n in NAMES] + [(n, Dnp3AttributesProbe) for n in NAMES],
)
async def test_dnp3_probe_sends_only_declared_requests(
    dnp3_lab: dict[str, Dnp3LabDevice],
    ics_target: IcsTargetFactory,
    name: str,
    probe_cls: type[Probe],
) -> None:
    device, probe = dnp3_lab[name], probe_cls()
    target = ics_target(device.address, device.port, probe, dict(FAST))
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    await asyncio.sleep(0.05)
    assert device.requests
    received = Counter(_request_name(frame) for frame in device.requests)
    assert received == target.ledger.sent
    assert all(count <= probe.manifest.limit(n) for n, count in received.items())
    assert device.connections == probe.manifest.connections_per_device == 1


def test_dnp3_requests_never_carry_functions_of_operate_or_restart_captures() -> None:
    forbidden_app: set[int] = set()
    for capture in DANGEROUS_CAPTURES:
        for frame in _frames(shared_data("pcaps", "dnp3", capture)):
            function = _app_function(frame)
            if frame.from_master and function not in (None, 0x00, 0x01):
                forbidden_app.add(function)
    assert {0x02, 0x03, 0x04, 0x05, 0x07, 0x0D, 0x0E} <= forbidden_app  # not vacuous
    ours = [request_link_status(d, 1) for d in (0xFFFF, 1, 10)] + [
        attributes_read_request(10, 1, seq) for seq in range(4)
    ]
    for wire in ours:
        frame = decode_link_frame(wire)
        assert frame.function in (4, 9)  # unconfirmed user data or request link status
        assert _app_function(frame) not in forbidden_app
        assert _app_function(frame) in (None, 0x01)


async def test_dnp3_probe_raises_timeout_when_no_address_answers(
    dnp3_lab: dict[str, Dnp3LabDevice], ics_target: IcsTargetFactory
) -> None:
    device = dnp3_lab["dnp3-ied-ge-d20"]
    options = {**FAST, "dnp3_addresses": [7, 8]}
    with pytest.raises(ProbeTimeoutError):
        await Dnp3Probe().observe(
            ics_target(device.address, device.port, Dnp3Probe(), options), timeout_s=TIMEOUT_S
        )
    assert [f.link_function for f in device.requests] == [9, 9]


def test_dnp3_crc_matches_reference_value() -> None:
    # CRC-16/DNP check value for "123456789" (catalogue of parametrised CRC algorithms).
    assert crc_dnp(b"123456789") == 0xEA82


def test_dnp3_decoder_checks_every_crc_of_captured_frames() -> None:
    frames = _frames(shared_data("pcaps", "dnp3", "read_and_response.pcap"))
    responses = [f for f in frames if not f.from_master]
    assert responses
    assert {(f.source, f.destination) for f in responses} == {(10, 1)}
    fragment = next(f for f in responses if _app_function(f) == 0x81).user_data[1:]
    answer = decode_attributes_response(fragment)
    assert answer.attributes == {}  # a class poll answer: no Group 0 object in it
    assert len(answer.iin) == 2


def test_dnp3_decoder_rejects_corrupted_crc() -> None:
    for stream in tcp_streams(shared_data("pcaps", "dnp3", "read_and_response.pcap")):
        wire = bytearray(stream.data[: frame_size(stream.data[:10])])
        wire[-1] ^= 0xFF  # last CRC byte of the last block
        with pytest.raises(ProbeProtocolError):
            decode_link_frame(bytes(wire))
    wire = bytearray(request_link_status(10, 1))
    wire[3] ^= 0x01
    with pytest.raises(ProbeProtocolError):
        decode_link_frame(bytes(wire))


def test_dnp3_attribute_strings_are_bounded_and_printable() -> None:
    facts = attribute_facts(AttributesAnswer(b"\x00\x00", {252: b"Evil\x1b[2J" + b"A" * 400}))
    vendor = facts["vendor"]
    assert isinstance(vendor, str)
    assert len(vendor) <= MAX_TEXT_BYTES
    assert vendor.isprintable()


def _seed_frames() -> list[bytes]:
    seeds = [request_link_status(1, 10), attributes_read_request(10, 1)]
    for capture in ("read_and_response.pcap", "unsolcited_response_and_confirm.pcap"):
        for stream in tcp_streams(shared_data("pcaps", "dnp3", capture)):
            seeds.append(stream.data)
    return seeds


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        frame = decode_link_frame(data)
        assert len(frame.user_data) <= 250
    with contextlib.suppress(ProbeProtocolError):
        facts = attribute_facts(decode_attributes_response(data))
        for value in facts.values():
            if isinstance(value, str):
                assert len(value) <= MAX_TEXT_BYTES
                assert value.isprintable()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_dnp3_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_dnp3_decoder_fuzz_mutated_captures_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    wire = bytearray(data.draw(st.sampled_from(_seed_frames())))
    for _ in range(data.draw(st.integers(1, 6))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(wire) - 1, 0)))
        if action == "flip" and wire:
            wire[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del wire[position:]
        else:
            wire[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    _check(bytes(wire))
    _check(bytes(wire[10:]))
