"""Tests of the opt-in UMAS probe against replayed Modicon CPUs and the umas/mod_90 captures."""

import contextlib
from collections.abc import AsyncIterator
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
)
from scanners.lab.legacy_devices import legacy_lab_devices, legacy_misfits
from scanners.modbus import ModbusProbe
from scanners.pcap import PcapReaderImporter
from scanners.umas import (
    FC_UMAS,
    MAX_NAME_BYTES,
    REQUEST_INIT_COMM,
    REQUEST_READ_ID,
    SEQUENCE,
    UmasProbe,
    umas_request,
)
from tests.conftest import shared_data
from tests.scanners.plc_fixtures import mutate, read_packets, run_devices
from tests.timing import scaled

BASE = "127.25.6.0"
TIMEOUT_S = scaled(2.0)
UMAS_CAPTURE = ("pcaps", "umas", "umas.pcap")
MOD90_CAPTURE = ("pcaps", "modbus", "mod_90.pcap")
# UMAS sub-functions that change a PLC: reservation, writes, upload/download, start/stop.
DANGEROUS = {0x10, 0x11, 0x23, 0x25, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x40, 0x41, 0x71}


def _target(device: Any, probe: Probe, scope: str = "127.25.0.0/16") -> ProbeTarget:
    connector = Connector(ScopeGuard([ScopeRule.build("umas-tests", [scope])]))
    return ProbeTarget(
        device.address,
        device.port,
        probe.transport,
        connector,
        RequestLedger(probe.name, probe.manifest),
    )


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    devices = [d for d in legacy_lab_devices(BASE) if d.protocol == "umas"]
    async for started in run_devices(devices + legacy_misfits(BASE, 502)):
        yield started


def test_umas_probe_is_optional() -> None:
    assert UmasProbe.optional is True
    assert UmasProbe.name == "umas"


@pytest.mark.parametrize("name", ["umas-quantum", "umas-m340"])
async def test_umas_probe_reads_cpu_module_and_sends_only_read_id_and_init(
    lab: dict[str, Any], name: str
) -> None:
    device, probe = lab[name], UmasProbe()
    target = _target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.facts["max_frame_size"] == 253
    assert device.requests == [REQUEST_READ_ID, REQUEST_INIT_COMM]
    assert list(target.ledger.sent.elements()) == device.requests
    assert device.connections == 1


async def test_umas_probe_returns_none_on_modbus_exception(lab: dict[str, Any]) -> None:
    # A Modbus server without UMAS answers FC 90 with exception 01: the lab answers that to any
    # function but 43 and 90, so send the probe to a device whose FC 90 we refuse below.
    device = lab["umas-quantum"]
    original = device.responder

    def refuse(frame: bytes, state: dict[str, Any]) -> bytes | None:
        if frame[7:8] == bytes([FC_UMAS]):
            return frame[:4] + b"\x00\x03\x00\xda\x01"
        answer: bytes | None = original(frame, state)
        return answer

    device.responder = refuse
    probe = UmasProbe()
    assert await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S) is None
    assert device.requests == [REQUEST_READ_ID]


async def test_umas_lab_device_also_answers_the_modbus_probe(lab: dict[str, Any]) -> None:
    device, probe = lab["umas-m340"], ModbusProbe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["product_code"] == "BMX P34 2020"


def _umas_frames(capture: tuple[str, ...], *, from_device: bool) -> list[bytes]:
    packets = read_packets(shared_data(*capture))
    side = [p for p in packets if (p.source_port if from_device else p.destination_port) == 502]
    return [p.payload for p in side if len(p.payload) > 9 and p.payload[7] == FC_UMAS]


def test_umas_probe_sends_the_recorded_read_id_and_init_requests() -> None:
    recorded = _umas_frames(UMAS_CAPTURE, from_device=False)
    # The probe's frames equal the recorded ones but for the transaction id.
    for tid, (_, sub_function, data) in enumerate(SEQUENCE, start=1):
        ours = umas_request(tid, sub_function, data)
        assert any(r[2:] == ours[2:] for r in recorded)


def test_umas_probe_never_sends_a_state_changing_sub_function_of_the_captures() -> None:
    seen = {frame[9] for frame in _umas_frames(UMAS_CAPTURE, from_device=False)}
    seen |= {frame[9] for frame in _umas_frames(MOD90_CAPTURE, from_device=False)}
    dangerous_seen = seen & DANGEROUS
    assert {0x10, 0x33, 0x34, 0x35} <= dangerous_seen  # the captures hold real examples
    sent = {umas_request(1, sub, data)[9] for _, sub, data in SEQUENCE}
    assert sent == {0x01, 0x02}
    assert not sent & dangerous_seen
    assert {m.request for m in UmasProbe.manifest.entries} == {REQUEST_READ_ID, REQUEST_INIT_COMM}


def test_umas_decoder_reads_quantum_cpu_from_capture() -> None:
    facts: dict[str, Any] = {}
    for answer in _umas_frames(UMAS_CAPTURE, from_device=True):
        facts |= UmasProbe().decode_answer(answer) or {}
    assert facts["vendor"] == "Schneider Electric"
    assert facts["cpu_module"] == facts["model"] == "140 CPU 311 10"


def test_umas_decoder_finds_no_identity_in_mod_90_exception() -> None:
    answers = _umas_frames(MOD90_CAPTURE, from_device=True)
    raw = [p.payload for p in read_packets(shared_data(*MOD90_CAPTURE)) if p.source_port == 502]
    assert raw
    assert not answers
    assert UmasProbe().decode_answer(raw[0]) is None


def test_umas_pcap_import_builds_modicon_from_capture() -> None:
    path = shared_data(*UMAS_CAPTURE)
    observations = list(PcapReaderImporter().observations(path, [ModbusProbe(), UmasProbe()]))
    umas = [o for o in observations if o.facts.get("umas")]
    assert len(umas) == 1
    assert umas[0].protocol == "modbus"
    assert umas[0].facts["model"] == "140 CPU 311 10"


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        facts = UmasProbe().decode_answer(data) or {}
        assert facts.pop("umas", True) is True
        for key, value in facts.items():
            assert isinstance(value, str)
            assert value.isprintable()
            assert len(value) <= (2 * 22 if key == "plc_id" else MAX_NAME_BYTES)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120))
def test_umas_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_umas_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    _check(mutate(data, _umas_frames(UMAS_CAPTURE, from_device=True)[:12]))
