"""Tests of the Omron FINS probes against scripted lab devices and the recorded capture."""

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from scanners.fins import (
    REQUEST_CONTROLLER_DATA,
    REQUEST_NODE_ADDRESS,
    FinsProbe,
    FinsUdpProbe,
    decode_controller_data,
    decode_node_answer,
    parse_tcp_header,
)
from scanners.lab.fins_devices import fins_lab_devices
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
NAMES = ["fins-plc-cj2m", "fins-plc-cp1l"]


@pytest.fixture
def plc_target() -> PlcTargetFactory:
    return target_factory()


@pytest.fixture
async def fins_lab() -> AsyncIterator[dict[str, Any]]:
    async for devices in run_devices(fins_lab_devices(PLC_LAB_BASE, misfits=True)):
        yield devices


def _recorded_answers() -> list[bytes]:
    """0501 answers (ICF with the response bit) of the capture."""
    return [
        p.payload
        for p in read_packets(shared_data("pcaps", "fins", "fins.pcap"))
        if len(p.payload) > 14 and p.payload[0] & 0x40 and p.payload[10:12] == b"\x05\x01"
    ]


@pytest.mark.parametrize("name", NAMES)
async def test_fins_udp_probe_identifies_model_and_version(
    fins_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = fins_lab[name], FinsUdpProbe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.facts["dm_words"] == 32768
    assert device.requests == [REQUEST_CONTROLLER_DATA] == list(target.ledger.sent.elements())


@pytest.mark.parametrize("name", NAMES)
async def test_fins_tcp_probe_identifies_and_sends_only_declared_requests(
    fins_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = fins_lab[f"{name}-tcp"], FinsProbe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.facts["node"] == 0x0A
    received = Counter(device.requests)
    assert received == {REQUEST_NODE_ADDRESS: 1, REQUEST_CONTROLLER_DATA: 1} == target.ledger.sent
    assert device.connections == 1


def test_fins_decoder_reads_controller_data_from_capture() -> None:
    answers = _recorded_answers()
    assert answers
    facts = decode_controller_data(answers[0])
    assert facts["model"] == "A" * 20
    assert facts["firmware"] == "B" * 20
    assert facts["end_code"] == "0x0000"
    assert facts["vendor"] == "Omron"


def test_fins_decoder_reports_error_end_code_without_identity() -> None:
    answer = bytes.fromhex("c00002000000000a00190501 0401".replace(" ", ""))
    assert decode_controller_data(answer) == {"vendor": "Omron", "end_code": "0x0401"}


def test_fins_decoder_rejects_requests_and_other_commands() -> None:
    with pytest.raises(ProbeProtocolError):
        decode_controller_data(bytes.fromhex("8000020000000000007a050100"))
    with pytest.raises(ProbeProtocolError):
        decode_controller_data(bytes.fromhex("c000020000000000007a01010000"))


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        for value in decode_controller_data(data).values():
            if isinstance(value, str):
                assert len(value) <= 40
                assert value.isprintable()
    with contextlib.suppress(ProbeProtocolError):
        parse_tcp_header(data[:16])
    with contextlib.suppress(ProbeProtocolError):
        decode_node_answer(data[:8])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fins_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fins_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    _check(mutate(data, _recorded_answers()))
