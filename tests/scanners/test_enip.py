"""Tests of the EtherNet/IP probes against scripted lab devices and the recorded captures."""

import contextlib
import struct
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from cybermission.probes import (
    Transport,
)
from scanners.enip import (
    MAX_TEXT_BYTES,
    REQUEST_LIST_IDENTITY,
    REQUEST_LIST_SERVICES,
    EnipProbe,
    EnipUdpProbe,
    decode_items,
    decode_list_identity,
    decode_list_services,
    decode_reply,
    identity_facts,
)
from scanners.enip_vendors import ENIP_VENDORS, vendor_name
from scanners.lab.enip_devices import enip_lab_devices, identity_item
from tests.conftest import shared_data
from tests.scanners.plc_fixtures import (
    PLC_LAB_BASE,
    PlcTargetFactory,
    mutate,
    read_packets,
    run_devices,
    target_factory,
)
from tests.timing import scaled

TIMEOUT_S = scaled(2.0)
NAMES = ["enip-plc-compactlogix", "enip-plc-m580", "enip-plc-omron-nj"]


@pytest.fixture
def plc_target() -> PlcTargetFactory:
    return target_factory()


@pytest.fixture
async def enip_lab() -> AsyncIterator[dict[str, Any]]:
    async for devices in run_devices(enip_lab_devices(PLC_LAB_BASE, misfits=True)):
        yield devices


def _seed_reply() -> bytes:
    item = identity_item(
        "10.0.0.5",
        vendor_id=1,
        device_type=0x0E,
        product_code=55,
        revision=(20, 11),
        status=0x0030,
        serial=0x00C0FFEE,
        product_name="1756-L61/B LOGIX5561",
    )
    return struct.pack("<HHII8sI", 0x63, len(item), 0, 0, b"cybermsn", 0) + item


@pytest.mark.parametrize("name", NAMES)
async def test_enip_probe_identifies_every_identity_field(
    enip_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = enip_lab[name], EnipProbe()
    observation = await probe.observe(plc_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert facts["services"] == [{"name": "Communications", "version": 1, "capabilities": 0x120}]
    assert facts["state_name"] == "operational"


@pytest.mark.parametrize("name", NAMES)
async def test_enip_udp_probe_identifies_over_udp(
    enip_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = enip_lab[f"{name}-udp"], EnipUdpProbe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.transport is Transport.UDP
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert device.requests == [REQUEST_LIST_IDENTITY] == list(target.ledger.sent.elements())


@pytest.mark.parametrize("name", NAMES)
async def test_enip_probe_sends_only_declared_read_requests(
    enip_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = enip_lab[name], EnipProbe()
    target = plc_target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    received = Counter(device.requests)
    assert received == {REQUEST_LIST_IDENTITY: 1, REQUEST_LIST_SERVICES: 1} == target.ledger.sent
    assert device.connections == probe.manifest.connections_per_device == 1


def test_enip_vendor_table_names_the_common_vendors() -> None:
    assert ENIP_VENDORS[1] == "Rockwell Automation/Allen-Bradley"
    assert ENIP_VENDORS[243] == "Schneider Electric"
    assert ENIP_VENDORS[47] == "Omron Corporation"
    assert vendor_name(65000) == "vendor id 65000"


def test_enip_decoder_reads_register_session_and_cip_replies_from_capture() -> None:
    """The captures hold no ListIdentity; their replies still exercise the framing decoders."""
    replies = [
        decode_reply(p.payload)
        for p in read_packets(shared_data("pcaps", "enip", "cip_1.pcap"))
        if p.source_port == 44818 and len(p.payload) >= 24
    ]
    assert {r.command for r in replies} >= {0x0065, 0x006F}
    send_rr = next(r for r in replies if r.command == 0x006F)
    items = decode_items(send_rr.body[6:])  # interface handle (4) and timeout (2) come first
    assert [kind for kind, _ in items] == [0x0000, 0x00B2]
    with pytest.raises(ProbeProtocolError):
        decode_list_identity(send_rr)


def test_enip_decoder_reads_identity_item() -> None:
    facts = decode_list_identity(decode_reply(_seed_reply()))
    assert facts["vendor"] == "Rockwell Automation/Allen-Bradley"
    assert facts["device_type_name"] == "Programmable Logic Controller"
    assert facts["revision"] == "20.11"
    assert facts["serial"] == "0x00c0ffee"
    assert facts["product_name"] == "1756-L61/B LOGIX5561"
    assert facts["socket_address"] == "10.0.0.5:44818"
    assert facts["status_flags"] == []


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        reply = decode_reply(data)
        for decode in (decode_list_identity, decode_list_services):
            with contextlib.suppress(ProbeProtocolError):
                facts = decode(reply)
                values = facts.values() if isinstance(facts, dict) else []
                for value in values:
                    if isinstance(value, str):
                        assert len(value) <= 2 * MAX_TEXT_BYTES
                        assert value.isprintable()
    with contextlib.suppress(ProbeProtocolError):
        identity_facts(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_enip_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_enip_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    seeds = [_seed_reply()] + [
        p.payload
        for p in read_packets(shared_data("pcaps", "enip", "cip_1.pcap"))[:40]
        if p.source_port == 44818
    ]
    _check(mutate(data, seeds))
