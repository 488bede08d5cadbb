"""Tests of the CoAP probe against aiocoap street-lighting devices and spec-built messages."""

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import (
    ProbeTarget,
    RequestLedger,
)
from scanners.coap import (
    REQUEST_CORE,
    REQUEST_CORE_BLOCK,
    REQUEST_TYPED_INFO,
    CoapProbe,
    info_resources,
)
from scanners.coap_message import (
    CODE_CONTENT,
    CODE_GET,
    OPTION_ACCEPT,
    OPTION_BLOCK2,
    OPTION_CONTENT_FORMAT,
    OPTION_URI_PATH,
    TYPE_ACK,
    TYPE_CON,
    Message,
    decode_message,
    encode_message,
    get_request,
)
from scanners.coap_resources import (
    FORMAT_LINK,
    FORMAT_LWM2M_TLV,
    MAX_ATTR_BYTES,
    MAX_LINKS,
    decode_tlv,
    device_info,
    parse_link_format,
    resources_facts,
)
from scanners.lab.urban_devices import CABINET_LAMPS, coap_lab_devices, lwm2m_tlv
from scanners.pcap import PcapReaderImporter
from tests.scanners.building_fixtures import run_devices
from tests.timing import scaled

BASE = "127.26.1.0"
SCOPE = "127.26.0.0/16"
TIMEOUT_S = scaled(1.0)
# RFC 6690 §5 example, with a quoted title holding the separators.
LINKS = (
    '</sensors/temp>;rt="temperature-c";if="sensor",'
    '</sensors/light>;rt="light-lux";if="sensor";title="Light, lux; outside",'
    "</firmware/v2.1>;rt=firmware;sz=262144;obs"
)


def _target(device: Any, probe: CoapProbe, scope: str = SCOPE) -> ProbeTarget:
    connector = Connector(ScopeGuard([ScopeRule.build("coap-tests", [scope])]))
    return ProbeTarget(
        device.address,
        device.port,
        probe.transport,
        connector,
        RequestLedger(probe.name, probe.manifest),
    )


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    async for devices in run_devices(coap_lab_devices(BASE, misfits=True)):
        yield devices


@pytest.mark.parametrize("name", ["coap-streetlight", "coap-cabinet"])
async def test_coap_probe_identifies_street_lighting_devices(
    lab: dict[str, Any], name: str
) -> None:
    device, probe = lab[name], CoapProbe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert facts["core_code"] == "2.05"
    assert facts["product"] == device.identity["model"]
    assert facts["lwm2m"] is True
    assert facts["dtls"] is False
    assert "incomplete" not in facts


async def test_coap_probe_lists_resources_with_their_attributes(lab: dict[str, Any]) -> None:
    device, probe = lab["coap-streetlight"], CoapProbe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    resources = observation.facts["resources"]
    assert isinstance(resources, list)
    by_path = {r["path"]: r for r in resources if isinstance(r, dict)}
    assert by_path["/light/0"] == {
        "path": "/light/0",
        "rt": "streetlight.lamp",
        "if": "core.a",
        "title": "Luminaire 0",
        "obs": True,
    }
    assert by_path["/device"]["ct"] == "50"
    assert "streetlight.schedule" in observation.facts["resource_types"]  # type: ignore[operator]


async def test_coap_probe_follows_block2_through_a_long_resource_list(
    lab: dict[str, Any],
) -> None:
    device, probe = lab["coap-cabinet"], CoapProbe()
    target = _target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["resource_count"] == CABINET_LAMPS + 3
    assert target.ledger.sent[REQUEST_CORE_BLOCK] == 2
    assert device.requests.count(REQUEST_CORE_BLOCK) == 2


async def test_coap_probe_sends_block_continuations_from_the_first_source_port(
    lab: dict[str, Any],
) -> None:
    device, probe = lab["coap-cabinet"], CoapProbe()
    assert await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S) is not None
    assert device.requests == [REQUEST_CORE, REQUEST_CORE_BLOCK, REQUEST_CORE_BLOCK, "get /3/0"]
    assert len(device.sources) == len(device.requests)
    assert len(set(device.sources)) == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("coap-streetlight", [REQUEST_CORE, "get /device"]),
        ("coap-cabinet", [REQUEST_CORE, REQUEST_CORE_BLOCK, REQUEST_CORE_BLOCK, "get /3/0"]),
        ("coap-water-meter", [REQUEST_CORE, "get /dev"]),
    ],
)
async def test_coap_probe_sends_only_declared_requests(
    lab: dict[str, Any], name: str, expected: list[str]
) -> None:
    device, probe = lab[name], CoapProbe()
    target = _target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    received = Counter(device.requests)
    assert device.requests == expected
    assert set(received) <= {e.request for e in probe.manifest.entries}
    assert all(count <= probe.manifest.limit(name) for name, count in received.items())
    assert received == target.ledger.sent


@pytest.mark.parametrize("name", ["coap-water-meter", "coap-parking-sensor"])
async def test_coap_probe_reads_device_information_the_resource_list_advertises(
    lab: dict[str, Any], name: str
) -> None:
    device, probe = lab[name], CoapProbe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert "incomplete" not in facts


async def test_coap_probe_asks_a_typed_device_resource_once_under_its_manifest_name(
    lab: dict[str, Any],
) -> None:
    device, probe = lab["coap-parking-sensor"], CoapProbe()
    target = _target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    assert device.requests == [REQUEST_CORE, "get /mgmt/identity"]
    assert dict(target.ledger.sent) == {REQUEST_CORE: 1, REQUEST_TYPED_INFO: 1}


def test_coap_info_resources_order_and_bounds() -> None:
    links = parse_link_format(
        '</3/0>;rt="oma.lwm2m",</x>;rt="core.dev",</y>;rt="core.dev",</dev>,</device>'
    )
    assert info_resources(links) == [
        ("/device", "get /device"),
        ("/dev", "get /dev"),
        ("/3/0", "get /3/0"),
        ("/x", REQUEST_TYPED_INFO),
    ]
    hostile = parse_link_format("</" + "a/" * 10 + '>;rt="core.dev",<//>;rt="core.dev"')
    assert info_resources(hostile) == []


async def test_coap_probe_reads_device_resources_only_when_linked(lab: dict[str, Any]) -> None:
    device, probe = lab["coap-cabinet"], CoapProbe()
    assert await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S) is not None
    assert "get /device" not in device.requests  # the cabinet links /3/0 only
    assert "get /.well-known/device" not in device.requests


async def test_coap_probe_retransmits_once_then_times_out_on_silent_device(
    lab: dict[str, Any],
) -> None:
    device, probe = lab["coap-silent"], CoapProbe()
    target = _target(device, probe)
    async with asyncio.timeout(scaled(10)):
        with pytest.raises(ProbeTimeoutError):
            await probe.observe(target, timeout_s=0.3)
    assert dict(target.ledger.sent) == {REQUEST_CORE: 2}
    assert device.requests == [REQUEST_CORE, REQUEST_CORE]


async def test_coap_probe_reports_a_node_without_resource_discovery(lab: dict[str, Any]) -> None:
    device, probe = lab["coap-bare"], CoapProbe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts == {"dtls": False, "core_code": "4.04"}
    assert device.requests == [REQUEST_CORE]


def test_coap_request_encodes_uri_path_and_block2_per_rfc_7252() -> None:
    request = get_request("/.well-known/core", 0x1234, b"\xaa\xbb", block=(2 << 4) | 6)
    # Ver 1, CON, TKL 2 | GET | MID | token | Uri-Path ".well-known" (11, len 11 -> nibble 11),
    # Uri-Path "core" (delta 0), Block2 (delta 12) num 2 szx 6.
    assert request == (b"\x42\x01\x12\x34\xaa\xbb\xbb.well-known\x04core\xc1\x26")
    message = decode_message(request)
    assert message.mtype == TYPE_CON
    assert message.option(OPTION_BLOCK2) == b"\x26"


@given(
    path=st.sampled_from(["/.well-known/core", "/3/0", "/a/b/c"]),
    message_id=st.integers(0, 0xFFFF),
    token=st.binary(max_size=8),
    block=st.one_of(st.none(), st.integers(0, 0xFFFFF)),
    accept=st.one_of(st.none(), st.integers(0, 0xFFFF)),
)
def test_coap_request_keeps_each_message_id_and_token_with_options_built_once(
    path: str, message_id: int, token: bytes, block: int | None, accept: int | None
) -> None:
    """The options of a path are encoded once per run; each request still carries its own
    message id and token, byte for byte what the full encoder makes (issue 12)."""
    request = get_request(path, message_id, token, block=block, accept=accept)
    options = [(OPTION_URI_PATH, s.encode()) for s in path.strip("/").split("/")]
    if accept is not None:
        options.append((OPTION_ACCEPT, accept.to_bytes((accept.bit_length() + 7) // 8, "big")))
    if block is not None:
        options.append((OPTION_BLOCK2, block.to_bytes((block.bit_length() + 7) // 8, "big")))
    expected = Message(TYPE_CON, CODE_GET, message_id, token, tuple(options))
    assert request == encode_message(expected)
    assert decode_message(request) == expected


def test_coap_decoder_reads_extended_option_numbers_and_lengths() -> None:
    long_value = b"x" * 300
    message = Message(TYPE_ACK, CODE_CONTENT, 7, b"\x01", ((60, long_value), (2100, b"\x01")))
    decoded = decode_message(encode_message(message))
    assert decoded.options == message.options
    assert decoded.code_text == "2.05"


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"\x40\x01", "shorter"),
        (b"\x80\x01\x00\x00", "version"),
        (b"\x49\x01\x00\x00" + bytes(9), "token length"),
        (b"\x60\x45\x00\x01\xff", "payload marker"),
        (b"\x60\x45\x00\x01\xd1", "truncated"),
        (b"\x60\x00\x00\x01\x11\x00", "empty"),
        (b"\x60\x45\x00\x01\xf0", "nibble 15"),
    ],
)
def test_coap_decoder_rejects_malformed_messages(datagram: bytes, reason: str) -> None:
    with pytest.raises(ProbeProtocolError, match=reason):
        decode_message(datagram)


def test_coap_link_format_parser_reads_rfc_6690_example() -> None:
    links = parse_link_format(LINKS)
    assert [link.target for link in links] == [
        "/sensors/temp",
        "/sensors/light",
        "/firmware/v2.1",
    ]
    assert links[0].attributes == {"rt": "temperature-c", "if": "sensor"}
    assert links[1].attributes["title"] == "Light, lux; outside"
    assert links[2].attributes == {"rt": "firmware", "sz": "262144", "obs": ""}


def test_coap_link_format_bounds_links_and_attribute_values() -> None:
    text = ",".join(f"</r/{i}>;rt=lamp" for i in range(MAX_LINKS + 10))
    facts = resources_facts(parse_link_format(text))
    assert facts["resource_count"] == MAX_LINKS + 10
    resources = facts["resources"]
    assert isinstance(resources, list)
    assert len(resources) == MAX_LINKS
    assert facts["resources_truncated"] is True
    (link,) = parse_link_format(f'</r>;title="{"t" * 1000}";rt={"x" * 1000}')
    assert len(link.attributes["title"]) == len(link.attributes["rt"]) == MAX_ATTR_BYTES


def test_coap_link_format_reads_the_links_inside_the_size_bound() -> None:
    text = ",".join(f"</resource/{i:05d}>;if=core.s" for i in range(2000))
    links = parse_link_format(text)
    assert 0 < len(links) < 2000
    assert links[-1].attributes == {"if": "core.s"}


@pytest.mark.parametrize("text", ["/sensors", '<a>;rt="x" <b>', '</a>;title="open'])
def test_coap_link_format_rejects_broken_documents(text: str) -> None:
    with pytest.raises(ProbeProtocolError):
        parse_link_format(text)


def test_coap_lwm2m_tlv_reads_device_object_with_and_without_instance() -> None:
    resources = {0: "Acme", 1: "Lamp controller with a long model name", 3: "1.0"}
    assert decode_tlv(lwm2m_tlv(resources)) == {k: v.encode() for k, v in resources.items()}
    assert decode_tlv(lwm2m_tlv(resources, instance=0)) == {
        k: v.encode() for k, v in resources.items()
    }
    # 16-bit resource id, 8-bit length (§6.4.3 type byte 0b11_1_01_000).
    assert decode_tlv(b"\xe8\x01\x00\x02ok") == {256: b"ok"}
    with pytest.raises(ProbeProtocolError):
        decode_tlv(b"\xc8\x00\x10abc")


@pytest.mark.parametrize(
    ("payload", "content_format", "expected"),
    [
        (b"manufacturer: Acme\nmodel=LX-1\nnoise", 0, {"manufacturer": "Acme", "model": "LX-1"}),
        (b'{"mfr":"Acme","fw":"2.0","nested":{"a":1}}', 50, {"mfr": "Acme", "fw": "2.0"}),
        (
            b'[{"n":"/3/0/0","vs":"Acme"},{"n":"/3/0/3","vs":"9.1"},{"n":"9","v":80}]',
            110,
            {"manufacturer": "Acme", "firmware": "9.1"},
        ),
    ],
)
def test_coap_device_info_reads_text_json_and_senml(
    payload: bytes, content_format: int, expected: dict[str, str]
) -> None:
    assert device_info(payload, content_format) == expected


def test_coap_decode_answer_reads_a_recorded_resource_list_and_device_object() -> None:
    probe = CoapProbe()
    answer = Message(
        TYPE_ACK,
        CODE_CONTENT,
        1,
        b"\x01",
        ((OPTION_CONTENT_FORMAT, bytes((FORMAT_LINK,))),),
        LINKS.encode(),
    )
    facts = probe.decode_answer(encode_message(answer))
    assert facts is not None
    assert facts["resource_count"] == 3
    tlv = Message(
        TYPE_ACK,
        CODE_CONTENT,
        2,
        b"\x01",
        ((OPTION_CONTENT_FORMAT, FORMAT_LWM2M_TLV.to_bytes(2, "big")),),
        lwm2m_tlv({0: "Acme", 1: "LX-1"}),
    )
    assert probe.decode_answer(encode_message(tlv)) == {
        "vendor": "Acme",
        "model": "LX-1",
        "product": "LX-1",
        "device_info": {"manufacturer": "Acme", "model": "LX-1"},
        "dtls": False,
    }
    assert probe.decode_answer(get_request("/.well-known/core", 3, b"\x01")) is None


def test_coap_pcap_import_builds_the_resource_list(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    answer = Message(
        TYPE_ACK,
        CODE_CONTENT,
        1,
        b"\x01",
        ((OPTION_CONTENT_FORMAT, bytes((FORMAT_LINK,))),),
        LINKS.encode(),
    )
    path = tmp_path / "coap.pcap"
    # Recorded addresses are data: the importer never contacts them.
    wrpcap(
        str(path),
        [
            Ether()
            / IP(src="127.26.9.1", dst="127.26.9.2")
            / UDP(sport=40000, dport=5683)
            / get_request("/.well-known/core", 1, b"\x01"),
            Ether()
            / IP(src="127.26.9.2", dst="127.26.9.1")
            / UDP(sport=5683, dport=40000)
            / encode_message(answer),
        ],
    )
    observations = list(PcapReaderImporter().observations(path, [CoapProbe()]))
    assert [(o.address, o.protocol) for o in observations] == [("127.26.9.2", "coap")]
    assert observations[0].facts["resource_count"] == 3


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_coap_decoders_only_raise_protocol_errors_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        CoapProbe().decode_answer(data)
    for content_format in (None, 0, 50, 110, FORMAT_LWM2M_TLV):
        try:
            info = device_info(data, content_format)
        except ProbeProtocolError:
            continue
        assert all(len(v.encode()) <= MAX_ATTR_BYTES for v in info.values())


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(["<", ">", ";", ",", "=", '"', "\\", "rt", "/a", " ", "title", "é"]),
        max_size=80,
    ).map("".join)
)
def test_coap_link_format_parser_only_raises_protocol_errors(text: str) -> None:
    try:
        links = parse_link_format(text)
    except ProbeProtocolError:
        return
    facts = resources_facts(links)
    assert len(facts["resources"]) <= MAX_LINKS  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.binary(min_size=1, max_size=4))
def test_coap_decoder_survives_mutated_answers(position: int, junk: bytes) -> None:
    answer = bytearray(
        encode_message(
            Message(
                TYPE_ACK,
                CODE_CONTENT,
                1,
                b"\x01\x02",
                ((OPTION_CONTENT_FORMAT, bytes((FORMAT_LINK,))),),
                LINKS.encode(),
            )
        )
    )
    position %= len(answer)
    answer[position : position + len(junk)] = junk
    with contextlib.suppress(ProbeProtocolError):
        CoapProbe().decode_answer(bytes(answer))
