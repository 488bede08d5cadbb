"""Tests of the IEC 104 probes against c104 lab stations and the real capture iec104/iec104.pcap."""

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from cybermission.probes import (
    Probe,
    ProbeTarget,
)
from scanners.iec104 import (
    REQUEST_INTERROGATION,
    REQUEST_S_ACK,
    REQUEST_STARTDT,
    REQUEST_STOPDT,
    REQUEST_TESTFR,
    U_STARTDT_ACT,
    U_STARTDT_CON,
    Apdu,
    Iec104InterrogationProbe,
    Iec104Probe,
    decode_apdu,
    decode_asdu,
)
from scanners.lab.iec104_devices import Iec104LabDevice, ReceivedApdu, iec104_lab_devices
from scanners.lab.runner import listening
from tests.conftest import shared_data
from tests.scanners.industrial_fixtures import (
    IcsTargetFactory,
    ics_connector,
    ics_target,
    tcp_streams,
)
from tests.timing import scaled

__all__ = ["ics_connector", "ics_target"]  # fixtures used by name below

TIMEOUT_S = scaled(1.0)
LAB_BASE = "127.22.3.0"
NAMES = ["iec104-substation-rtu", "iec104-pv-plant"]
_REQUEST_NAMES = {
    ("U", "TESTFR ACT"): REQUEST_TESTFR,
    ("U", "STARTDT ACT"): REQUEST_STARTDT,
    ("U", "STOPDT ACT"): REQUEST_STOPDT,
    ("I", "C_IC_NA_1"): REQUEST_INTERROGATION,
    ("S", "ack"): REQUEST_S_ACK,
}


@pytest.fixture
async def iec104_lab() -> AsyncIterator[dict[str, Iec104LabDevice]]:
    devices = iec104_lab_devices(LAB_BASE)
    async with listening(devices):
        yield {device.name: device for device in devices}


def _name(apdu: ReceivedApdu) -> str:
    return _REQUEST_NAMES.get((apdu.format, apdu.what), f"{apdu.format}/{apdu.what}")


def _capture_apdus() -> list[tuple[int, bytes]]:
    """(source port, APDU bytes) of every APDU in the capture, split by the length octet."""
    apdus = []
    for stream in tcp_streams(shared_data("pcaps", "iec104", "iec104.pcap")):
        data, offset = stream.data, 0
        while offset + 2 <= len(data) and data[offset] == 0x68:
            size = data[offset + 1] + 2
            apdus.append((stream.source[1], data[offset : offset + size]))
            offset += size
    return apdus


async def _observe(probe: Probe, target: ProbeTarget) -> dict[str, object]:
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    return dict(observation.facts)


@pytest.mark.parametrize("name", NAMES)
async def test_iec104_probe_confirms_testfr_only(
    iec104_lab: dict[str, Iec104LabDevice], ics_target: IcsTargetFactory, name: str
) -> None:
    device, probe = iec104_lab[name], Iec104Probe()
    target = ics_target(device.address, device.port, probe)
    facts = await _observe(probe, target)
    assert facts == {"iec104": True, "testfr_confirmed": True}
    await asyncio.sleep(0.15)  # c104 reports from its own thread
    assert [_name(r) for r in device.requests] == [REQUEST_TESTFR]
    assert device.connections == 1


@pytest.mark.parametrize("name", NAMES)
async def test_iec104_interrogation_reports_station_address_and_asdu_types(
    iec104_lab: dict[str, Iec104LabDevice], ics_target: IcsTargetFactory, name: str
) -> None:
    device, probe = iec104_lab[name], Iec104InterrogationProbe()
    facts = await _observe(probe, ics_target(device.address, device.port, probe))
    assert facts["common_address"] == device.identity["common_address"]
    assert facts["interrogation"] == "terminated"
    assert set(facts["asdu_types"]) == set(device.identity["asdu_types"])  # type: ignore[call-overload, arg-type]
    assert facts["information_objects"] == len(device.points)


@pytest.mark.parametrize("name", NAMES)
async def test_iec104_interrogation_sends_only_declared_requests(
    iec104_lab: dict[str, Iec104LabDevice], ics_target: IcsTargetFactory, name: str
) -> None:
    device, probe = iec104_lab[name], Iec104InterrogationProbe()
    target = ics_target(device.address, device.port, probe)
    await _observe(probe, target)
    await asyncio.sleep(0.15)
    received = Counter(_name(r) for r in device.requests)
    assert received == target.ledger.sent
    assert received[REQUEST_STOPDT] == 1
    assert all(count <= probe.manifest.limit(n) for n, count in received.items())
    assert device.connections == 1


def test_iec104_interrogation_is_opt_in() -> None:
    assert Iec104InterrogationProbe.optional is True
    assert Iec104Probe.optional is False
    assert [e.request for e in Iec104Probe.manifest.entries] == [REQUEST_TESTFR]


def test_iec104_decoder_reads_live_session_from_capture() -> None:
    apdus = _capture_apdus()
    assert apdus
    decoded = [decode_apdu(raw) for _, raw in apdus]
    u_functions = {a.u_function for a in decoded if a.kind == "U"}
    assert {U_STARTDT_ACT, U_STARTDT_CON} <= u_functions
    asdus = [decode_asdu(a.asdu) for a in decoded if a.kind == "I"]
    assert asdus
    assert all(a.common_address > 0 for a in asdus)
    assert all(a.type_id > 0 for a in asdus)


def test_iec104_decoder_rejects_length_mismatch_and_unknown_u_function() -> None:
    with pytest.raises(ProbeProtocolError):
        decode_apdu(bytes((0x68, 5, 0x43, 0, 0, 0)))
    with pytest.raises(ProbeProtocolError):
        decode_apdu(bytes((0x68, 4, 0x47, 0, 0, 0)))
    assert decode_apdu(bytes((0x68, 4, 0x83, 0, 0, 0))) == Apdu("U", u_function=0x83)


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        apdu = decode_apdu(data)
        if apdu.kind == "I":
            decode_asdu(apdu.asdu)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=260))
def test_iec104_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)
    _check(b"\x68" + bytes((len(data) + 1,)) + data[:253])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_iec104_decoder_fuzz_mutated_capture_only_raises_protocol_error(
    data: st.DataObject,
) -> None:
    seeds = [raw for _, raw in _capture_apdus()[:40]]
    wire = bytearray(data.draw(st.sampled_from(seeds)))
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
