"""Tests of the CODESYS V3 probe (11740/tcp, name-service identification).

No capture of CODESYS V3 exists in the shared set and no simulator of it is on PyPI: the lab
runtimes (``scanners/lab/legacy_devices.py``) are responders written from the wire format that
nmap's ``codesys3`` NSE library and Microsoft's ics-forensics-tools CODESYS V3 plugin document
(block driver, datagram layer, name service), encoded independently of the probe's decoder; one
of them carries the runtime names of nmap's documented example output (a WAGO PFC200).
"""

import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from scanners.codesys3 import (
    REQUEST_IDENTIFY,
    TCP_MAGIC,
    Codesys3Probe,
    decode_block,
    identify_request,
    tcp_address,
)
from scanners.lab.legacy_devices import (
    cds3_identification,
    classify_cds3,
    codesys3_responder,
    legacy_lab_devices,
)
from tests.scanners.plc_fixtures import mutate, run_devices, target_factory
from tests.timing import scaled

BASE = "127.21.7.0"  # inside the PLC tests' scope (plc_fixtures)
TIMEOUT_S = scaled(2.0)
PFC200 = cds3_identification(
    node="PFC200-438F4C",
    device="WAGO 750-8206 PFC200 2ETH RS CAN DPS",
    vendor="WAGO",
    version=(5, 15, 4, 0),
    target_id=0x10061204,
    target_type=0x1000,
    serial="SN-0001",
)


_target = target_factory()


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    devices = [d for d in legacy_lab_devices(BASE) if d.port == 11740]
    async for started in run_devices(devices):
        yield started


@pytest.mark.parametrize("name", ["codesys3-pfc200", "codesys3-control-win"])
async def test_codesys3_probe_identifies_the_runtime_with_one_name_service_request(
    lab: dict[str, Any], name: str
) -> None:
    device, probe = lab[name], Codesys3Probe()
    target = _target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.protocol == "codesys"
    assert device.requests == [REQUEST_IDENTIFY] == list(target.ledger.sent.elements())
    assert device.connections == 1


async def test_codesys3_probe_names_the_device_not_the_target_id(lab: dict[str, Any]) -> None:
    device, probe = lab["codesys3-pfc200"], Codesys3Probe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert facts["model"] == facts["product"] == "WAGO 750-8206 PFC200 2ETH RS CAN DPS"
    assert facts["product_code"] == facts["target_id"] == "0x10061204"
    assert (facts["target_type"], facts["byte_order"]) == ("0x00001000", "intel")


def test_codesys3_request_is_a_framed_name_service_datagram() -> None:
    request = identify_request(
        0x01020304, tcp_address("127.25.7.110", 11740), tcp_address("127.0.0.1", 40000)
    )
    magic, length = struct.unpack("<II", request[:8])
    assert (magic, length) == (TCP_MAGIC, len(request))
    assert len(request) % 4 == 0
    assert classify_cds3(request) == REQUEST_IDENTIFY
    assert request[-8:] == struct.pack("<HHI", 0xC202, 0x0400, 0x01020304)


def test_codesys3_decoder_reads_an_identification_with_a_serial() -> None:
    answer = codesys3_responder(PFC200)(
        identify_request(7, tcp_address("10.0.0.2", 11740), tcp_address("10.0.0.1", 50000)), {}
    )
    assert isinstance(answer, bytes)
    facts = decode_block(answer)
    assert (facts["vendor"], facts["serial"], facts["firmware"]) == ("WAGO", "SN-0001", "5.15.4.0")
    assert facts["node_name"] == "PFC200-438F4C"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"\x00\x00\x00\x00\x10\x00\x00\x00" + bytes(8), "not a CODESYS V3 block"),
        (struct.pack("<II", TCP_MAGIC, 16) + b"\xc6" + bytes(7), "0xc5"),
        (struct.pack("<II", TCP_MAGIC, 0x10000), "block of"),
    ],
)
def test_codesys3_decoder_refuses_what_is_not_an_identification(answer: bytes, reason: str) -> None:
    with pytest.raises(ProbeProtocolError, match=reason):
        decode_block(answer)


def _seed() -> bytes:
    answer = codesys3_responder(PFC200)(
        identify_request(7, tcp_address("10.0.0.2", 11740), tcp_address("10.0.0.1", 50000)), {}
    )
    assert isinstance(answer, bytes)
    return answer


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_codesys3_decoder_fuzz_mutated_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    answer = mutate(data, [_seed()])
    try:
        facts = Codesys3Probe().decode_answer(answer)
    except ProbeProtocolError:
        return
    if facts is not None:
        assert all(len(str(v)) <= 512 for v in facts.values())
