"""Tests of the IEC 61850 MMS probe against replaying lab IEDs and the recorded captures."""

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from scanners.lab.mms_devices import mms_lab_devices
from scanners.lab.s7_devices import s7_lab_devices
from scanners.mms import (
    INITIATE_SPDU,
    MAX_TEXT_BYTES,
    REQUEST_COTP,
    REQUEST_IDENTIFY,
    REQUEST_INITIATE,
    MmsProbe,
    decode_identify_answer,
)
from scanners.s7 import S7Probe
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
NAMES = ["mms-ied-ref615", "mms-ied-sel751"]


@pytest.fixture
def plc_target() -> PlcTargetFactory:
    return target_factory()


@pytest.fixture
async def mms_lab() -> AsyncIterator[dict[str, Any]]:
    devices = mms_lab_devices(PLC_LAB_BASE, misfits=True) + s7_lab_devices(PLC_LAB_BASE)
    async for started in run_devices(devices):
        yield started


def _recorded(name: str) -> list[tuple[int, bytes]]:
    """(source port, COTP user data) of each DT of a capture."""
    out = []
    for packet in read_packets(shared_data("pcaps", "iec61850", name)):
        payload = packet.payload
        if len(payload) > 7 and payload[:2] == b"\x03\x00" and payload[5] == 0xF0:
            out.append((packet.source_port, payload[7:]))
    return out


@pytest.mark.parametrize("name", NAMES)
async def test_mms_probe_identifies_and_sends_only_declared_requests(
    mms_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = mms_lab[name], MmsProbe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    received = Counter(device.requests)
    expected = {REQUEST_COTP: 1, REQUEST_INITIATE: 1, REQUEST_IDENTIFY: 1}
    assert received == expected == target.ledger.sent
    assert device.connections == 1


async def test_s7_probe_steps_aside_for_mms_then_mms_identifies(
    mms_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    """Port 102 runs S7 first: on an IED it must return None so that MMS gets its turn."""
    device = mms_lab["mms-ied-ref615"]
    assert await S7Probe().observe(plc_target(device, S7Probe()), timeout_s=TIMEOUT_S) is None
    observation = await MmsProbe().observe(plc_target(device, MmsProbe()), timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["vendor"] == "ABB"


async def test_mms_probe_returns_none_on_s7_cpu(
    mms_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = mms_lab["s7-cpu-315-recorded"], MmsProbe()
    target = plc_target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is None
    assert REQUEST_IDENTIFY not in target.ledger.sent


async def test_mms_probe_returns_none_on_snap7_cpu_refusing_its_tsap(
    mms_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = mms_lab["s7-cpu-315"], MmsProbe()
    target = plc_target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is None
    assert dict(target.ledger.sent) == {REQUEST_COTP: 1}
    s7 = await S7Probe().observe(plc_target(device, S7Probe()), timeout_s=TIMEOUT_S)
    assert s7 is not None
    assert s7.facts["serial"] == device.identity["serial"]


def test_mms_decoder_reads_identify_answer_from_capture() -> None:
    answers = [data for port, data in _recorded("piccolo.pcap") if port == 102]
    identities = []
    for data in answers:
        with contextlib.suppress(ProbeProtocolError):
            identities.append(decode_identify_answer(data))
    assert {"vendor": "INFO TECH", "model": "S61850 for PC", "revision": "0.0.1"}.items() <= (
        identities[0].items()
    )


def test_mms_probe_sends_the_recorded_association_request() -> None:
    requests = [data for port, data in _recorded("mms_3.pcap") if port != 102]
    assert requests[0] == INITIATE_SPDU


def test_mms_decoder_rejects_read_answer_as_identify() -> None:
    read_answers = [data for port, data in _recorded("mms_read.pcap") if port == 102][1:]
    assert read_answers
    for data in read_answers:
        with pytest.raises(ProbeProtocolError):
            decode_identify_answer(data)


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        for value in decode_identify_answer(data).values():
            assert isinstance(value, str)
            assert len(value) <= MAX_TEXT_BYTES
            assert value.isprintable()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_mms_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(b"\x01\x00\x01\x00" + data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mms_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    seeds = [d for port, d in _recorded("piccolo.pcap") + _recorded("mms_3.pcap") if port == 102]
    _check(mutate(data, seeds))
