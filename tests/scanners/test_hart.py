"""Tests of the HART-IP probes against the replayed WirelessHART gateway and hart_ip.pcap."""

import contextlib
import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import (
    Probe,
    ProbeTarget,
    RequestLedger,
    Transport,
)
from scanners.hart import (
    MAX_STRING_BYTES,
    REQUEST_CLOSE,
    REQUEST_CMD0,
    REQUEST_CMD13,
    REQUEST_CMD20,
    REQUEST_INITIATE,
    HartIpProbe,
    HartIpUdpProbe,
    close_message,
    decode_message,
    decode_pdu,
    initiate_message,
    long_frame,
    packed_ascii,
    pdu_message,
    short_frame,
)
from scanners.lab.legacy_devices import legacy_lab_devices, legacy_misfits
from scanners.pcap import PcapReaderImporter
from tests.conftest import shared_data
from tests.scanners.plc_fixtures import mutate, read_packets, run_devices
from tests.timing import scaled

BASE = "127.25.2.0"
TIMEOUT_S = scaled(2.0)
CAPTURE = ("pcaps", "hart", "hart_ip.pcap")
SEQUENCE = [REQUEST_INITIATE, REQUEST_CMD0, REQUEST_CMD20, REQUEST_CMD13, REQUEST_CLOSE]
GATEWAY = {
    "vendor": "Rosemount",
    "manufacturer_id": 38,
    "expanded_device_type": "0x264e",
    "device_id": "0000d2",
    "serial": "0000d2",
    "long_tag": "wihartgw",
    "hart_revision": 7,
    "device_profile_name": "WirelessHART gateway",
}


def _target(device: Any, probe: Probe, scope: str = "127.25.0.0/16") -> ProbeTarget:
    connector = Connector(ScopeGuard([ScopeRule.build("hart-tests", [scope])]))
    return ProbeTarget(
        device.address,
        device.port,
        probe.transport,
        connector,
        RequestLedger(probe.name, probe.manifest),
    )


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    devices = [d for d in legacy_lab_devices(BASE) if d.protocol == "hart-ip"]
    async for started in run_devices(devices + legacy_misfits(BASE, 5094)):
        yield started


@pytest.mark.parametrize(
    ("name", "probe_cls"), [("hart-wihartgw", HartIpProbe), ("hart-wihartgw-udp", HartIpUdpProbe)]
)
async def test_hart_probe_identifies_gateway_and_sends_only_declared_requests(
    lab: dict[str, Any], name: str, probe_cls: type[HartIpProbe] | type[HartIpUdpProbe]
) -> None:
    device, probe = lab[name], probe_cls()
    target = _target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in GATEWAY} == GATEWAY
    assert "tag" not in observation.facts  # command 13 answered an unset (all-zero) tag
    assert device.requests == SEQUENCE == list(target.ledger.sent.elements())
    assert device.connections == (1 if probe.transport is Transport.TCP else 0)


def _recorded(transport: str) -> tuple[list[bytes], list[bytes]]:
    packets = [p for p in read_packets(shared_data(*CAPTURE)) if p.transport == transport]
    ports = (5094, 5095)
    requests = [p.payload for p in packets if p.destination_port in ports]
    answers = [p.payload for p in packets if p.source_port in ports]
    return requests, answers


def test_hart_probe_requests_match_the_recorded_session() -> None:
    requests, answers = _recorded("tcp")
    by_command = {decode_message(r).body[2]: r for r in requests if r[2] == 3 and r[8] == 0x02}
    by_command |= {decode_message(r).body[6]: r for r in requests if r[2] == 3 and r[8] == 0x82}
    assert initiate_message(2) == requests[0]
    assert pdu_message(3, short_frame(0)) == by_command[0]
    address = decode_pdu(decode_message(answers[1]).body).data
    long_address = bytes([address[1] & 0x3F, address[2]]) + address[9:12]
    assert pdu_message(0x0A, long_frame(20, long_address)) == by_command[20]
    assert pdu_message(0x09, long_frame(13, long_address)) == by_command[13]
    assert close_message(0x0D) == requests[-1]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_hart_decoder_reads_gateway_identity_from_capture(transport: str) -> None:
    facts: dict[str, Any] = {}
    for answer in _recorded(transport)[1]:
        facts |= HartIpProbe().decode_answer(answer) or {}
    assert {k: facts.get(k) for k in GATEWAY} == GATEWAY
    assert facts["session_timer_ms"] == 60000


def test_hart_pcap_import_builds_gateway_from_capture() -> None:
    observations = list(PcapReaderImporter().observations(shared_data(*CAPTURE), [HartIpProbe()]))
    hart = [o for o in observations if o.protocol == "hart-ip"]
    assert len(hart) == 1
    assert hart[0].facts["long_tag"] == "wihartgw"
    assert hart[0].facts["vendor"] == "Rosemount"


def test_hart_decoder_rejects_bad_checksum() -> None:
    answer = bytearray(_recorded("tcp")[1][1])
    answer[-1] ^= 0xFF
    with pytest.raises(ProbeProtocolError, match="checksum"):
        HartIpProbe().decode_answer(bytes(answer))


def test_hart_packed_ascii_decodes_tag_and_treats_zeros_as_unset() -> None:
    # "TT-101  " packed: 6 bits per character (HCF_SPEC-099).
    text = "TT-101  "
    bits = 0
    for char in text:
        bits = (bits << 6) | (ord(char) & 0x3F)
    assert packed_ascii(bits.to_bytes(6, "big")) == "TT-101"
    assert packed_ascii(bytes(6)) == ""


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        facts = HartIpProbe().decode_answer(data) or {}
        for value in facts.values():
            if isinstance(value, str):
                assert value.isprintable()
                assert len(value) <= MAX_STRING_BYTES


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80))
def test_hart_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hart_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    _check(mutate(data, _recorded("tcp")[1] + _recorded("udp")[1]))


async def test_hart_udp_probe_hears_that_nothing_listens() -> None:
    """ICMP port unreachable ends the probe at once with no observation, neither an error nor
    a silence waited out (which cost every lab run a probe timeout per address)."""
    probe = HartIpUdpProbe()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((BASE, 0))
    port = sock.getsockname()[1]
    sock.close()  # free again: datagrams to it draw port unreachable
    target = _target(SimpleNamespace(address=BASE, port=port), probe)
    # A silence would raise ProbeTimeoutError after the (long) timeout, an unhandled ICMP
    # answer ConnectionRefusedError.
    assert await probe.observe(target, timeout_s=scaled(60)) is None
    assert target.ledger.sent == {REQUEST_INITIATE: 1}


async def test_hart_udp_probe_sends_the_whole_session_from_one_source_port(
    lab: dict[str, Any],
) -> None:
    device, probe = lab["hart-wihartgw-udp"], HartIpUdpProbe()
    assert await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S) is not None
    assert len(device.sources) == len(SEQUENCE)
    assert len(set(device.sources)) == 1
