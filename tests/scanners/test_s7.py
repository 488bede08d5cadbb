"""Tests of the S7comm probe against python-snap7 lab CPUs, recorded-answer replays and captures."""

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.probes import (
    ProbeTarget,
)
from scanners.lab.s7_devices import s7_lab_devices
from scanners.s7 import (
    MAX_TEXT_BYTES,
    REQUEST_COTP,
    REQUEST_SETUP,
    REQUEST_SZL_001C,
    REQUEST_SZL_0011,
    REQUEST_SZL_011C,
    REQUEST_SZL_0111,
    S7Probe,
    SzlAnswer,
    component_identity_facts,
    cotp_user_data,
    decode_setup_answer,
    decode_szl_answer,
    module_identity_facts,
    parse_tpkt_header,
)
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


@pytest.fixture
def plc_target() -> PlcTargetFactory:
    return target_factory()


@pytest.fixture
async def s7_lab() -> AsyncIterator[dict[str, Any]]:
    async for devices in run_devices(s7_lab_devices(PLC_LAB_BASE, misfits=True)):
        yield devices


def _s7_answers(name: str) -> list[bytes]:
    """S7 PDUs sent from port 102 in a capture (one TPKT per segment in these captures)."""
    pdus = []
    for packet in read_packets(shared_data("pcaps", "s7", name)):
        payload = packet.payload
        if packet.source_port == 102 and len(payload) > 7 and payload[5] == 0xF0:
            parse_tpkt_header(payload[:4])
            pdus.append(cotp_user_data(payload[4:]))
    return pdus


def _szl_answers(name: str, szl_id: int) -> list[SzlAnswer]:
    """Decoded SZL read answers (userdata group 4, subfunction 1) for ``szl_id`` in a capture."""
    answers = []
    for pdu in _s7_answers(name):
        if pdu[1] == 0x07 and pdu[15] == 0x84 and pdu[16] == 0x01:  # response, SZL, read
            try:
                answer = decode_szl_answer(pdu)
            except ProbeProtocolError:
                continue  # a continuation data unit carries no SZL header (not asked by the probe)
            if isinstance(answer, SzlAnswer) and answer.szl_id == szl_id:
                answers.append(answer)
    return answers


def _assert_read_only(device: Any, target: ProbeTarget, connections: int = 1) -> None:
    received = Counter(device.requests)
    manifest = S7Probe.manifest
    assert set(received) <= {e.request for e in manifest.entries}, received
    for name, count in received.items():
        assert count <= manifest.limit(name)
    assert received == target.ledger.sent
    assert device.connections == connections


@pytest.mark.parametrize("name", ["s7-cpu-315", "s7-cpu-1214c", "s7-cpu-315-recorded"])
async def test_s7_probe_identifies_every_identity_field(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = s7_lab[name], S7Probe()
    observation = await probe.observe(plc_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert facts["s7comm_plus"] is False
    assert observation.protocol == "s7comm"


async def test_s7_probe_reads_module_and_component_lists_from_snap7(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = s7_lab["s7-cpu-315"], S7Probe()
    observation = await probe.observe(plc_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert facts["product_code"] == "6ES7 315-2EH14-0AB0"
    assert facts["hardware_version"] == "1"
    assert facts["bootloader"] == "A37.12.12"
    assert facts["plant_identification"] == "FILTRATION"
    assert facts["copyright"] == "Original Siemens Equipment"
    assert facts["tsap"] == "0x0100/0x0102"
    assert facts["pdu_length"] == 480


@pytest.mark.parametrize("name", ["s7-cpu-315", "s7-cpu-1214c"])
async def test_s7_probe_sends_only_declared_read_requests(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = s7_lab[name], S7Probe()
    target = plc_target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    await asyncio.sleep(0.05)  # snap7 logs from its own threads
    assert Counter(device.requests) == {
        REQUEST_COTP: 1,
        REQUEST_SETUP: 1,
        REQUEST_SZL_0011: 1,
        REQUEST_SZL_001C: 1,
    }
    _assert_read_only(device, target)


async def test_s7_probe_falls_back_to_single_records_when_lists_are_short_or_empty(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = s7_lab["s7-cpu-short-lists"], S7Probe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert facts["szl_fallbacks"] == ["0x0111/0x0007", "0x011c/0x0005", "0x011c/0x0007"]
    assert facts["szl_errors"] == {"0x001c": "empty"}
    await asyncio.sleep(0.05)
    assert Counter(device.requests) == {
        REQUEST_COTP: 1,
        REQUEST_SETUP: 1,
        REQUEST_SZL_0011: 1,
        REQUEST_SZL_001C: 1,
        REQUEST_SZL_0111: 1,
        REQUEST_SZL_011C: 2,
    }
    _assert_read_only(device, target)


async def test_s7_probe_identifies_python_snap7_servers_own_short_answers(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    """python-snap7's server as shipped: its 0x001C header once made the whole read fail."""
    device, probe = s7_lab["s7-cpu-snap7"], S7Probe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert "firmware" not in facts  # the short record carries no version bytes
    await asyncio.sleep(0.05)
    _assert_read_only(device, target)


async def test_s7_probe_skips_component_read_when_switched_off(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = s7_lab["s7-cpu-315"], S7Probe()
    target = plc_target(device, probe, {"szl_001c": False})
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    await asyncio.sleep(0.05)
    assert REQUEST_SZL_001C not in device.requests
    assert "serial" not in observation.facts
    assert observation.facts["szl_001c"] is False
    assert observation.facts["firmware"] == "V3.2.8"
    _assert_read_only(device, target)


async def test_s7_probe_falls_back_to_next_tsap_when_refused(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = s7_lab["s7-cpu-315-recorded"], S7Probe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["tsap"] == "0x0100/0x0200"
    assert target.ledger.sent[REQUEST_COTP] == 2
    _assert_read_only(device, target, connections=2)


async def test_s7_probe_stops_at_s7comm_plus(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = s7_lab["s7-cpu-1516-plus"], S7Probe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["s7comm_plus"] is True
    assert dict(target.ledger.sent) == {REQUEST_COTP: 1, REQUEST_SETUP: 1}
    _assert_read_only(device, target)


async def test_s7_probe_raises_timeout_on_silent_device(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = s7_lab["s7-silent"], S7Probe()
    async with asyncio.timeout(scaled(10)):
        with pytest.raises(ProbeTimeoutError):
            await probe.observe(plc_target(device, probe), timeout_s=0.3)
    assert device.connections == 1


async def test_s7_probe_returns_none_on_garbage_and_closing_devices(
    s7_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    probe = S7Probe()
    garbage, closing = s7_lab["s7-garbage"], s7_lab["s7-closing"]
    assert await probe.observe(plc_target(garbage, probe), timeout_s=TIMEOUT_S) is None
    assert garbage.bytes_received > 0
    target = plc_target(closing, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is None
    assert target.ledger.sent[REQUEST_COTP] == 3  # every TSAP pair, then gives up


def test_s7_decoder_reads_module_identification_from_capture() -> None:
    modules = _szl_answers("s7_all.pcap", 0x0011)
    assert modules
    facts = module_identity_facts(modules[0])
    assert facts == {
        "order_number": "6ES7 315-2EH14-0AB0",
        "product_code": "6ES7 315-2EH14-0AB0",
        "hardware_order_number": "6ES7 315-2EH14-0AB0",
        "hardware_version": "1",
        "firmware": "V3.2.14",
        "bootloader": "A37.12.12",
    }


def test_s7_decoder_reads_component_identification_from_partial_capture() -> None:
    components = _szl_answers("s7_all.pcap", 0x001C)
    assert components
    answer = components[0]
    assert answer.more_follows
    assert answer.announced == 10
    assert len(answer.records) == 6  # the first data unit holds six whole records
    facts = component_identity_facts(answer)
    assert facts["system_name"] == "SIMATIC 300(1)"
    assert facts["serial"] == "S C-JNS406642017"
    assert facts["model"] == "CPU 315-2 PN/DP"
    assert facts["copyright"] == "Original Siemens Equipment"


def test_s7_decoder_reads_station_name_of_second_capture() -> None:
    components = _szl_answers("s7_read_dev.pcap", 0x001C)
    facts = component_identity_facts(components[0])
    assert facts["system_name"] == "S7300/ET200M station_1"
    assert facts["module_name"] == "pn-io"


def test_s7_decoder_reads_setup_pdu_length_from_capture() -> None:
    setups = [p for p in _s7_answers("s7_all.pcap") if p[1] == 0x03 and p[12:13] == b"\xf0"]
    assert {decode_setup_answer(p) for p in setups} == {240}


def _check(pdu: bytes) -> None:
    try:
        answer = decode_szl_answer(pdu)
    except ProbeProtocolError:
        return
    if isinstance(answer, SzlAnswer):
        for facts in (module_identity_facts(answer), component_identity_facts(answer)):
            for value in facts.values():
                assert isinstance(value, str)
                assert len(value) <= MAX_TEXT_BYTES
                assert value.isprintable()
    try:
        decode_setup_answer(pdu)
    except ProbeProtocolError:
        return


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_s7_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        parse_tpkt_header(data[:4])
    _check(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_s7_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    seeds = [p for p in _s7_answers("s7_read_dev.pcap") if p[1] in (0x03, 0x07)]
    _check(mutate(data, seeds))
