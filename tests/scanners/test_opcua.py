"""Tests of the OPC UA probe against asyncua lab servers and the real capture opcua/opcua.pcap."""

import asyncio
import contextlib
import struct
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from cybermission.probes import (
    ProbeTarget,
)
from scanners.lab.opcua_devices import OpcUaLabDevice, opcua_lab_devices
from scanners.lab.runner import listening
from scanners.opcua import (
    REQUEST_CLOSE,
    REQUEST_GET_ENDPOINTS,
    REQUEST_HELLO,
    REQUEST_OPEN,
    OpcUaProbe,
    endpoint_facts,
)
from scanners.opcua_binary import (
    ID_GET_ENDPOINTS_REQUEST,
    ID_GET_ENDPOINTS_RESPONSE,
    MAX_STRING_BYTES,
    SECURITY_POLICY_NONE,
    ServiceFault,
    decode_acknowledge,
    decode_get_endpoints_response,
    decode_open_response,
)
from scanners.opcua_buildinfo import (
    REQUEST_ACTIVATE_SESSION,
    REQUEST_CLOSE_SESSION,
    REQUEST_CREATE_SESSION,
    REQUEST_READ_BUILD_INFO,
    OpcUaBuildInfoProbe,
)
from scanners.opcua_session import (
    ID_ACTIVATE_SESSION_REQUEST,
    ID_CLOSE_SESSION_REQUEST,
    ID_CREATE_SESSION_REQUEST,
    ID_READ_REQUEST,
    SessionTokens,
    read_build_info_message,
)
from tests.conftest import shared_data
from tests.scanners.industrial_fixtures import (
    IcsTargetFactory,
    ics_connector,
    ics_target,
    tcp_streams,
)
from tests.timing import scaled

__all__ = ["ics_connector", "ics_target"]  # fixtures used by name below

TIMEOUT_S = scaled(2.0)
LAB_BASE = "127.22.1.0"
_MESSAGE_NAMES = {"HEL": REQUEST_HELLO, "OPN": REQUEST_OPEN, "CLO": REQUEST_CLOSE}


# asyncua loads a whole address space per server (seconds): one lab for the module.
MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def opcua_lab_servers() -> AsyncIterator[dict[str, OpcUaLabDevice]]:
    devices = opcua_lab_devices(LAB_BASE)
    async with listening(devices):
        yield {device.name: device for device in devices}


@pytest.fixture
def opcua_lab(opcua_lab_servers: dict[str, OpcUaLabDevice]) -> dict[str, OpcUaLabDevice]:
    """The module's servers with their request logs cleared for this test."""
    for device in opcua_lab_servers.values():
        device.clear_log()
    return opcua_lab_servers


def _target(make: IcsTargetFactory, device: OpcUaLabDevice) -> ProbeTarget:
    return make(device.address, device.port, OpcUaProbe())


def _ua_messages(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type + chunk, body) of each UA TCP message in a reassembled stream."""
    messages = []
    offset = 0
    while offset + 8 <= len(data):
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        messages.append((data[offset : offset + 4], data[offset + 8 : offset + size]))
        offset += size
    return messages


def _capture_endpoint_answers() -> list[bytes]:
    """GetEndpoints response bodies (after the security and sequence headers) of the capture."""
    answers = []
    for stream in tcp_streams(shared_data("pcaps", "opcua", "opcua.pcap")):
        for kind, body in _ua_messages(stream.data):
            service = struct.pack("<BBH", 1, 0, ID_GET_ENDPOINTS_RESPONSE)
            if kind == b"MSGF" and body[16:20] == service:
                answers.append(body[16:])
    return answers


@pytest.mark.parametrize("name", ["opcua-scada-gateway", "opcua-plc-s71500"])
@MODULE_LOOP
async def test_opcua_probe_reports_application_and_security_facts(
    opcua_lab: dict[str, OpcUaLabDevice], ics_target: IcsTargetFactory, name: str
) -> None:
    device = opcua_lab[name]
    observation = await OpcUaProbe().observe(_target(ics_target, device), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    for key in ("application_uri", "product_uri", "application_name", "anonymous_allowed"):
        assert facts[key] == device.identity[key]
    assert facts["security_none_offered"] == device.identity["security_none_offered"]
    assert facts["security_policies"] == device.identity["security_policies"]
    tokens = facts["user_token_types"]
    assert isinstance(tokens, list)
    assert sorted(str(t) for t in tokens) == device.identity["user_token_types"]
    assert facts["instance_name"] == device.identity["application_name"]
    assert not {"product", "product_name"} & set(facts)  # an installation's name, not a product
    assert observation.protocol == "opcua"


@MODULE_LOOP
async def test_opcua_probe_lists_each_endpoint_with_mode_and_policy(
    opcua_lab: dict[str, OpcUaLabDevice], ics_target: IcsTargetFactory
) -> None:
    device = opcua_lab["opcua-plc-s71500"]
    observation = await OpcUaProbe().observe(_target(ics_target, device), timeout_s=TIMEOUT_S)
    assert observation is not None
    endpoints = observation.facts["endpoints"]
    assert isinstance(endpoints, list)
    pairs = {(e["security_mode"], e["security_policy"]) for e in endpoints if isinstance(e, dict)}
    basic = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
    assert pairs == {("None", SECURITY_POLICY_NONE), ("Sign", basic), ("SignAndEncrypt", basic)}
    assert observation.facts["anonymous_allowed"] is False
    assert isinstance(observation.facts["server_certificate_sha1"], str)


@pytest.mark.parametrize("name", ["opcua-scada-gateway", "opcua-plc-s71500"])
@MODULE_LOOP
async def test_opcua_probe_sends_only_declared_messages_and_never_a_session(
    opcua_lab: dict[str, OpcUaLabDevice], ics_target: IcsTargetFactory, name: str
) -> None:
    device, probe = opcua_lab[name], OpcUaProbe()
    target = _target(ics_target, device)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    await asyncio.sleep(0.05)  # let the server process the CLO
    assert device.requests
    received = Counter(
        REQUEST_GET_ENDPOINTS
        if r.message_type == "MSG" and r.service_id == ID_GET_ENDPOINTS_REQUEST
        else _MESSAGE_NAMES.get(r.message_type, f"{r.message_type}/{r.service_id}")
        for r in device.requests
    )
    assert received == target.ledger.sent
    assert set(received) == {e.request for e in probe.manifest.entries}
    assert all(count <= probe.manifest.limit(name) for name, count in received.items())
    assert device.connections == probe.manifest.connections_per_device == 1


# Service ids the asyncua lab records (binary encoding ids of the requests, OPC 10000-6 Annex A).
_BUILD_INFO_SERVICES = {
    ID_GET_ENDPOINTS_REQUEST: REQUEST_GET_ENDPOINTS,
    ID_CREATE_SESSION_REQUEST: REQUEST_CREATE_SESSION,
    ID_ACTIVATE_SESSION_REQUEST: REQUEST_ACTIVATE_SESSION,
    ID_READ_REQUEST: REQUEST_READ_BUILD_INFO,
    ID_CLOSE_SESSION_REQUEST: REQUEST_CLOSE_SESSION,
}


def _received(device: OpcUaLabDevice) -> Counter[str]:
    return Counter(
        _BUILD_INFO_SERVICES.get(r.service_id or -1, f"MSG/{r.service_id}")
        if r.message_type == "MSG"
        else _MESSAGE_NAMES.get(r.message_type, r.message_type)
        for r in device.requests
    )


@MODULE_LOOP
async def test_opcua_buildinfo_reads_manufacturer_product_and_version_anonymously(
    opcua_lab: dict[str, OpcUaLabDevice], ics_target: IcsTargetFactory
) -> None:
    device, probe = opcua_lab["opcua-scada-gateway"], OpcUaBuildInfoProbe()
    target = ics_target(device.address, device.port, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert facts["build_info"] == device.build_info
    assert (facts["vendor"], facts["product"], facts["firmware"]) == (
        "PTC Kepware",
        "KEPServerEX",
        "6.14.263.0",
    )
    assert observation.protocol == "opcua"
    await asyncio.sleep(0.05)  # let the server process the CLO
    received = _received(device)
    assert received == target.ledger.sent
    assert set(received) == {e.request for e in probe.manifest.entries}
    assert all(count == 1 for count in received.values())
    assert device.connections == 1


@MODULE_LOOP
async def test_opcua_buildinfo_opens_no_session_without_an_anonymous_none_endpoint(
    opcua_lab: dict[str, OpcUaLabDevice], ics_target: IcsTargetFactory
) -> None:
    device, probe = opcua_lab["opcua-plc-s71500"], OpcUaBuildInfoProbe()
    target = ics_target(device.address, device.port, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert "anonymous" in str(observation.facts["build_info_unread"]).lower()
    assert not {"vendor", "product", "firmware", "build_info"} & set(observation.facts)
    await asyncio.sleep(0.05)
    assert _received(device) == {
        REQUEST_HELLO: 1,
        REQUEST_OPEN: 1,
        REQUEST_GET_ENDPOINTS: 1,
        REQUEST_CLOSE: 1,
    }


def test_opcua_buildinfo_reads_only_the_five_build_info_values() -> None:
    session = SessionTokens(session_id=b"\x01\x00\x01\x00", authentication_token=b"\x00\x07")
    message = read_build_info_message(1, 1, 5, 5, session)
    values = message[8 + 16 :]  # UA TCP header, security and sequence headers
    # NodesToRead: five FourByte NodeIds of namespace 0, each with the Value attribute (13).
    nodes = [
        int.from_bytes(values[i + 2 : i + 4], "little")
        for i in range(len(values) - 3)
        if values[i : i + 2] == b"\x01\x00" and values[i + 4 : i + 8] == b"\x0d\x00\x00\x00"
    ]
    assert sorted(nodes) == [2261, 2262, 2263, 2264, 2265]


def test_opcua_decoder_reads_endpoints_from_capture() -> None:
    answers = _capture_endpoint_answers()
    assert answers
    decoded = decode_get_endpoints_response(answers[0])
    assert isinstance(decoded, list)
    assert decoded
    facts = endpoint_facts(decoded)
    assert SECURITY_POLICY_NONE in facts["security_policies"]  # type: ignore[operator]
    assert facts["security_none_offered"] is True
    assert isinstance(facts["application_uri"], str)
    assert facts["application_uri"]
    assert all(isinstance(e, dict) and e["url"] for e in facts["endpoints"])  # type: ignore[union-attr]


def test_opcua_decoder_reads_ack_and_open_response_from_capture() -> None:
    streams = tcp_streams(shared_data("pcaps", "opcua", "opcua.pcap"))
    server = next(s for s in streams if s.source[1] == 12001)
    messages = dict(_ua_messages(server.data)[:2])
    ack = decode_acknowledge(messages[b"ACKF"])
    assert ack.protocol_version == 0
    assert ack.receive_buffer_size == 0xFFFF
    token = decode_open_response(messages[b"OPNF"])
    assert token.channel_id == 0x195F


def test_opcua_decoder_reports_service_fault() -> None:
    # ServiceFault (i=397) with ServiceResult BadServiceUnsupported (0x800B0000).
    body = struct.pack("<BBH", 1, 0, 397) + b"\x00" * 8 + struct.pack("<II", 1, 0x800B0000)
    body += b"\x00" + struct.pack("<i", -1) + b"\x00\x00\x00"
    assert decode_get_endpoints_response(body) == ServiceFault(0x800B0000)


def test_opcua_decoder_bounds_strings() -> None:
    answers = _capture_endpoint_answers()
    facts = endpoint_facts(decode_get_endpoints_response(answers[0]))  # type: ignore[arg-type]
    for value in facts.values():
        if isinstance(value, str):
            assert len(value) <= MAX_STRING_BYTES
            assert value.isprintable()


def _check(body: bytes) -> None:
    try:
        decoded = decode_get_endpoints_response(body)
    except ProbeProtocolError:
        return
    if isinstance(decoded, list):
        facts = endpoint_facts(decoded)
        for value in facts.values():
            if isinstance(value, str):
                assert len(value) <= MAX_STRING_BYTES
                assert value.isprintable()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_opcua_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)
    for decode in (decode_open_response, decode_acknowledge):
        with contextlib.suppress(ProbeProtocolError):
            decode(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_opcua_decoder_fuzz_mutated_capture_only_raises_protocol_error(
    data: st.DataObject,
) -> None:
    seeds = _capture_endpoint_answers()[:2]
    body = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 6))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(body) - 1, 0)))
        if action == "flip" and body:
            body[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del body[position:]
        else:
            body[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    _check(bytes(body))
