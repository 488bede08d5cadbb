"""Tests of the MELSEC probes against replayed and scripted lab CPUs and the recorded captures."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from cybermission.probes import (
    Transport,
)
from scanners.lab.melsec_devices import melsec_lab_devices
from scanners.melsec import (
    MELSOFT_CPU_MODEL_REQUEST,
    REQUEST_CPU_MODEL,
    MelsecProbe,
    MelsecUdpProbe,
    decode_melsoft_answer,
    decode_slmp_answer,
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
async def melsec_lab() -> AsyncIterator[dict[str, Any]]:
    async for devices in run_devices(melsec_lab_devices(PLC_LAB_BASE, misfits=True)):
        yield devices


def _recorded(name: str, port: int) -> list[tuple[bytes, bytes]]:
    """(request, answer) payload pairs of a capture, by the MELSEC port."""
    packets = read_packets(shared_data("pcaps", "melsec-q", name))
    requests = [p.payload for p in packets if p.destination_port == port]
    answers = [p.payload for p in packets if p.source_port == port]
    return list(zip(requests, answers, strict=False))


@pytest.mark.parametrize(
    ("name", "probe_cls"),
    [
        ("melsec-q03ude", MelsecProbe),
        ("melsec-q03ude-udp", MelsecUdpProbe),
        ("melsec-r04-slmp", MelsecProbe),
    ],
)
async def test_melsec_probe_identifies_cpu_model_and_sends_one_read(
    melsec_lab: dict[str, Any],
    plc_target: PlcTargetFactory,
    name: str,
    probe_cls: type[MelsecProbe] | type[MelsecUdpProbe],
) -> None:
    device, probe = melsec_lab[name], probe_cls()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert device.requests == [REQUEST_CPU_MODEL] == list(target.ledger.sent.elements())
    assert device.connections == (1 if probe.transport is Transport.TCP else 0)


@pytest.mark.parametrize(
    ("name", "port"), [("melsecq_tcp.pcapng", 5007), ("melsecq_udp.pcapng", 5006)]
)
def test_melsec_decoder_reads_cpu_model_from_capture(name: str, port: int) -> None:
    pairs = _recorded(name, port)
    assert pairs
    request, answer = pairs[0]
    assert request == MELSOFT_CPU_MODEL_REQUEST  # the probe sends exactly what GX Works sent
    facts = decode_melsoft_answer(answer)
    assert facts == {
        "vendor": "Mitsubishi Electric",
        "model": "Q03UDECPU",
        "model_code": "0x0268",
        "frame": "melsoft",
    }


def test_melsec_decoder_reports_slmp_end_code_without_model() -> None:
    answer = bytes.fromhex("d00000ffff03000200" + "5fc0")
    assert decode_slmp_answer(answer)["end_code"] == "0xc05f"
    assert "model" not in decode_slmp_answer(answer)


def _check(data: bytes) -> None:
    for decode in (decode_melsoft_answer, decode_slmp_answer):
        with contextlib.suppress(ProbeProtocolError):
            model = decode(data).get("model", "")
            assert isinstance(model, str)
            assert len(model) <= 16
            assert model.isprintable()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120))
def test_melsec_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_melsec_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    seeds = [answer for _, answer in _recorded("melsecq_tcp.pcapng", 5007)]
    seeds.append(bytes.fromhex("d00000ffff0300160000005230344350552020202020202020202000" + "48"))
    _check(mutate(data, seeds))
