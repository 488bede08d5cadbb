"""Tests of the PC WORX probe against lab ILCs (recorded and encoded answers) and the capture."""

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
from scanners.pcap import PcapReaderImporter
from scanners.pcworx import (
    MAX_STRING_BYTES,
    REQUEST_INFO,
    REQUEST_INITIATE,
    REQUEST_SESSION,
    PcworxProbe,
    info_request,
    session_request,
)
from tests.conftest import shared_data
from tests.scanners.plc_fixtures import mutate, read_packets, run_devices
from tests.timing import scaled

BASE = "127.25.4.0"
TIMEOUT_S = scaled(2.0)
CAPTURE = ("pcaps", "proconos", "proconos-connect-stop-then-start.pcap")


def _target(device: Any, probe: Probe, scope: str = "127.25.0.0/16") -> ProbeTarget:
    connector = Connector(ScopeGuard([ScopeRule.build("pcworx-tests", [scope])]))
    return ProbeTarget(
        device.address,
        device.port,
        probe.transport,
        connector,
        RequestLedger(probe.name, probe.manifest),
    )


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    devices = [d for d in legacy_lab_devices(BASE) if d.protocol == "pcworx"]
    async for started in run_devices(devices + legacy_misfits(BASE, 1962)):
        yield started


@pytest.mark.parametrize("name", ["pcworx-ilc191", "pcworx-ilc330"])
async def test_pcworx_probe_identifies_plc_and_sends_the_three_messages(
    lab: dict[str, Any], name: str
) -> None:
    device, probe = lab[name], PcworxProbe()
    target = _target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert device.requests == [REQUEST_INITIATE, REQUEST_SESSION, REQUEST_INFO]
    assert list(target.ledger.sent.elements()) == device.requests
    assert device.connections == 1


def _recorded(port: int) -> tuple[list[bytes], list[bytes]]:
    packets = read_packets(shared_data(*CAPTURE))
    return (
        [p.payload for p in packets if p.destination_port == port],
        [p.payload for p in packets if p.source_port == port],
    )


def test_pcworx_requests_have_the_recorded_shape() -> None:
    requests, _ = _recorded(1962)
    session_id = requests[0][11]
    ours = {
        session_request(session_id)[:2]: session_request(session_id),
        info_request(session_id)[:2]: info_request(session_id),
    }
    for request in requests:
        mine = ours[request[:2]]
        assert len(mine) == len(request)
        # Same message, length, session id and service bytes; the sequence (4..5), client bytes
        # (8..9) and, in 01 05, byte 15 (0x06 in pcworx-info, 0x00 in PC WORX) differ.
        assert mine[:4] == request[:4]
        assert mine[10:12] == request[10:12]
        assert mine[16:] == request[16:]


def test_pcworx_decoder_reads_ilc191_from_capture() -> None:
    facts: dict[str, Any] = {}
    for answer in _recorded(1962)[1]:
        facts |= PcworxProbe().decode_answer(answer) or {}
    assert facts == {
        "vendor": "Phoenix Contact",
        "plc_type": "ILC 191 ETH 2TX",
        "model": "ILC 191 ETH 2TX",
        "model_number": "2700976",
        "product_code": "2700976",
        "firmware": "4.42",
        "firmware_date": "11/26/15",
        "firmware_time": "18:46:55",
    }


def test_pcworx_probe_never_sends_the_recorded_control_requests() -> None:
    # The capture's stop/start commands go to ProConOS remoting (41100); our three messages all
    # go to 1962 and none equals any of them.
    control, _ = _recorded(41100)
    assert control
    ours = [session_request(0x4C), info_request(0x4C)]
    assert not any(o in c or c in o for o in ours for c in control)


def test_pcworx_pcap_import_builds_plc_from_capture() -> None:
    observations = list(PcapReaderImporter().observations(shared_data(*CAPTURE), [PcworxProbe()]))
    plc = [o for o in observations if o.protocol == "pcworx"]
    assert len(plc) == 1
    assert plc[0].facts["model"] == "ILC 191 ETH 2TX"


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        facts = PcworxProbe().decode_answer(data) or {}
        for value in facts.values():
            assert isinstance(value, str)
            assert value.isprintable()
            assert len(value) <= MAX_STRING_BYTES


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_pcworx_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(b"\x81\x06" + data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_pcworx_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    _check(mutate(data, _recorded(1962)[1][:2]))
