"""Passive decoders of the protocol probes: identities read from real captures, hostile bytes."""

import datetime
import functools
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from cybermission.probes import Facts, Observation, PassiveDecoder, Transport
from scanners.bacnet import BacnetProbe
from scanners.banners import FtpProbe, SshProbe, TelnetProbe
from scanners.dnp3 import Dnp3Probe
from scanners.enip import EnipProbe, EnipUdpProbe
from scanners.fins import FinsProbe, FinsUdpProbe
from scanners.http import HttpProbe
from scanners.iec104 import Iec104Probe
from scanners.melsec import MelsecProbe, MelsecUdpProbe
from scanners.mms import MmsProbe
from scanners.mqtt import MqttProbe
from scanners.opcua import OpcUaProbe
from scanners.pcap import PcapReaderImporter
from scanners.s7 import S7Probe
from scanners.snmp import SnmpProbe, _integer, _tlv, encode_oid
from tests.conftest import shared_data
from tests.scanners.plc_fixtures import mutate

# Every probe this file covers, with the captures that hold its recorded answers.
DECODERS: dict[type[PassiveDecoder], tuple[tuple[str, ...], ...]] = {
    S7Probe: (("s7", "s7_all.pcap"), ("s7", "s7comm_reading_plc_status.pcap")),
    MmsProbe: (("iec61850", "mms.pcap"), ("iec61850", "piccolo.pcap")),
    EnipProbe: (("enip", "cip.pcap"), ("enip", "cip_1.pcap")),
    EnipUdpProbe: (),
    FinsProbe: (),
    FinsUdpProbe: (("fins", "fins.pcap"),),
    MelsecProbe: (("melsec-q", "melsecq_tcp.pcapng"),),
    MelsecUdpProbe: (("melsec-q", "melsecq_udp.pcapng"),),
    OpcUaProbe: (("opcua", "opcua.pcap"),),
    Dnp3Probe: (("dnp3", "read_and_response.pcap"), ("dnp3", "file_read.pcap")),
    Iec104Probe: (("iec104", "iec104.pcap"),),
    BacnetProbe: (("bacnet", "bacnet.pcap"),),
    SnmpProbe: (),
    MqttProbe: (),
    HttpProbe: (),
    TelnetProbe: (),
    FtpProbe: (),
    SshProbe: (),
}


def _import(parts: tuple[str, ...], *decoders: PassiveDecoder) -> list[Observation]:
    return list(PcapReaderImporter().observations(shared_data("pcaps", *parts), decoders))


def _facts(parts: tuple[str, ...], decoder: PassiveDecoder, address: str, port: int) -> Facts:
    found = [o for o in _import(parts, decoder) if (o.address, o.port) == (address, port)]
    assert [o.probe for o in found] == [f"passive:{decoder.name}"]
    assert found[0].facts["passive"] is True
    return found[0].facts


def test_s7_decoder_reads_the_station_of_s7_all() -> None:
    facts = _facts(("s7", "s7_all.pcap"), S7Probe(), "192.168.0.3", 102)
    assert facts["system_name"] == "SIMATIC 300(1)"
    assert facts["order_number"] == "6ES7 315-2EH14-0AB0"
    assert facts["hardware_order_number"] == "6ES7 315-2EH14-0AB0"
    assert facts["serial"] == "S C-JNS406642017"
    assert facts["module_type"] == "CPU 315-2 PN/DP"
    assert facts["firmware"] == "V3.2.14"
    assert facts["vendor"] == "Siemens"
    assert facts["pdu_length"] == 240


def test_s7_decoder_reads_an_et200s_cpu() -> None:
    facts = _facts(("s7", "s7comm_reading_plc_status.pcap"), S7Probe(), "192.168.1.40", 102)
    assert facts["order_number"] == "6ES7 151-8AB01-0AB0"
    assert facts["serial"] == "S C-C6TW74882012"
    assert facts["model"] == "IM151-8 PN/DP CPU"


def test_mms_decoder_reads_the_identify_answer_split_from_its_tpkt_header() -> None:
    # mms.pcap sends each TPKT header in a segment of its own: only the stream decodes.
    facts = _facts(("iec61850", "mms.pcap"), MmsProbe(), "10.101.1.3", 102)
    assert facts["vendor"] == "AREVA T&D Corporation"
    assert facts["model"] == "e-terracomm"
    assert facts["firmware"] == "2.3.1"


def test_mms_decoder_reads_piccolo_identify() -> None:
    facts = _facts(("iec61850", "piccolo.pcap"), MmsProbe(), "10.10.0.30", 102)
    assert (facts["vendor"], facts["model"], facts["revision"]) == (
        "INFO TECH",
        "S61850 for PC",
        "0.0.1",
    )


def test_mms_decoder_marks_an_association_without_identify() -> None:
    facts = _facts(("iec61850", "mms_read.pcap"), MmsProbe(), "127.0.0.1", 102)
    assert facts["mms_association"] is True
    assert "vendor" not in facts


def test_s7_and_mms_decoders_leave_each_others_captures_alone() -> None:
    assert not _import(("iec61850", "piccolo.pcap"), S7Probe())
    assert not _import(("s7", "s7_all.pcap"), MmsProbe())


def test_enip_decoder_reads_the_logix_identity_inside_a_cip_session() -> None:
    facts = _facts(("enip", "cip.pcap"), EnipProbe(), "192.168.1.10", 44818)
    assert facts["product_name"] == "1756-L71/B LOGIX5571"
    assert facts["vendor"] == "Rockwell Automation/Allen-Bradley"
    assert facts["serial"] == "0x00af7b1b"
    assert facts["revision"] == "20.55"
    # Issue 12: the product code is a code; the CIP product name is the model (never "92").
    assert facts["product_code"] == "92"
    assert facts["model"] == facts["product"] == "1756-L71/B LOGIX5571"


def test_enip_decoder_reads_a_list_identity_datagram() -> None:
    identity = bytes.fromhex(
        "01000002af12c0a8000a0000000000000000"  # version, sockaddr (port 44818, 192.168.0.10)
        "01000e005c001437603116000000"  # vendor 1, type 14, code 92, 20.55, status, serial 0x16
        "0a" + b"1756-L71/B".hex() + "03"
    )
    body = b"\x01\x00" + b"\x0c\x00" + len(identity).to_bytes(2, "little") + identity
    header = bytes.fromhex("6300") + len(body).to_bytes(2, "little") + bytes(20)
    facts = EnipUdpProbe().decode_answer(header + body)
    assert facts is not None
    assert facts["socket_address"] == "192.168.0.10:44818"
    assert facts["product_name"] == "1756-L71/B"
    assert facts["state_name"] == "operational"


def test_fins_decoder_reads_answers_recorded_towards_the_plc_port() -> None:
    facts = _facts(("fins", "fins.pcap"), FinsUdpProbe(), "10.130.130.130", 9600)
    assert facts["model"] == "A" * 20
    assert facts["firmware"] == "B" * 20
    assert facts["vendor"] == "Omron"


def test_fins_tcp_decoder_reads_node_and_controller_data() -> None:
    udp_answer = bytes.fromhex("c100020000000000007a05010000") + b"CJ2M-CPU31".ljust(20, b"\0")
    udp_answer += b"02.01".ljust(20, b"\0") + bytes(40)
    node = b"FINS" + bytes.fromhex("000000100000000100000000000000ef0000000a")
    frame = b"FINS" + (8 + len(udp_answer)).to_bytes(4, "big") + bytes.fromhex("0000000200000000")
    facts = FinsProbe().decode_answer(node + frame + udp_answer)
    assert facts == {
        "node": 10,
        "client_node": 239,
        "vendor": "Omron",
        "end_code": "0x0000",
        "model": "CJ2M-CPU31",
        "firmware": "02.01",
    }


@pytest.mark.parametrize(
    ("decoder", "capture", "port"),
    [
        (MelsecProbe(), ("melsec-q", "melsecq_tcp.pcapng"), 5007),
        (MelsecUdpProbe(), ("melsec-q", "melsecq_udp.pcapng"), 5006),
    ],
)
def test_melsec_decoder_reads_the_cpu_model_of_pcapng_captures(
    decoder: PassiveDecoder, capture: tuple[str, ...], port: int
) -> None:
    facts = _facts(capture, decoder, "60.249.15.235", port)
    assert facts["model"] == "Q03UDECPU"
    assert facts["model_code"] == "0x0268"
    assert facts["frame"] == "melsoft"


def test_opcua_decoder_reads_endpoints_of_a_server_on_a_non_default_port() -> None:
    facts = _facts(("opcua", "opcua.pcap"), OpcUaProbe(), "192.168.41.212", 12001)
    assert facts["application_name"] == "UA StackTest Server (AnsiC/2048)"
    assert facts["security_policies"] == [
        "http://opcfoundation.org/UA/SecurityPolicy#None",
        "http://opcfoundation.org/UA/SecurityPolicy#Basic128Rsa15",
        "http://opcfoundation.org/UA/SecurityPolicy#Basic256",
    ]
    assert facts["anonymous_allowed"] is True
    assert facts["security_none_offered"] is True
    assert facts["max_message_size"] == 4000
    assert isinstance(facts["endpoints"], list)
    assert len(facts["endpoints"]) == 5


class _NoMatcher:
    """The OPC UA decoder without its request recogniser."""

    name: ClassVar[str] = "opcua"
    protocol: ClassVar[str] = "opcua"
    default_ports: ClassVar[tuple[int, ...]] = OpcUaProbe.default_ports
    transport: ClassVar[Transport] = Transport.TCP

    def decode_answer(self, payload: bytes) -> Facts | None:
        return OpcUaProbe().decode_answer(payload)


def test_opcua_server_on_12001_is_found_only_through_the_clients_hello() -> None:
    assert not [o for o in _import(("opcua", "opcua.pcap"), _NoMatcher()) if o.port == 12001]
    assert OpcUaProbe().matches_request(b"HELF\x20\x00\x00\x00")
    assert not OpcUaProbe().matches_request(b"ACKF\x1c\x00\x00\x00")


@pytest.mark.parametrize(
    ("capture", "address", "outstation", "master"),
    [
        (("dnp3", "read_and_response.pcap"), "192.168.60.130", 10, 1),
        (("dnp3", "file_read.pcap"), "192.168.1.1", 4, 3),
        (("dnp3", "cold_restart_and_response.pcap"), "192.168.60.130", 10, 1),
    ],
)
def test_dnp3_decoder_reads_addresses_from_outstation_link_frames(
    capture: tuple[str, ...], address: str, outstation: int, master: int
) -> None:
    facts = _facts(capture, Dnp3Probe(), address, 20000)
    assert (facts["outstation_address"], facts["master_address"]) == (outstation, master)


def test_dnp3_decoder_skips_master_frames() -> None:
    from scanners.dnp3 import request_link_status

    assert Dnp3Probe().decode_answer(request_link_status(10, 1)) is None


def test_iec104_decoder_reads_a_live_session() -> None:
    facts = _facts(("iec104", "iec104.pcap"), Iec104Probe(), "10.20.100.108", 2404)
    assert facts["startdt_confirmed"] is True
    assert facts["testfr_confirmed"] is True
    assert facts["common_address"] == 10
    assert facts["interrogation"] == "terminated"
    assert "M_ME_NC_1" in facts["asdu_types"]  # type: ignore[operator]
    assert facts["information_objects"] == 155


def test_bacnet_decoder_reads_the_simple_bacnet_server() -> None:
    facts = _facts(("bacnet", "bacnet.pcap"), BacnetProbe(), "192.168.0.13", 47808)
    assert facts["model"] == "Simple BACnet Server"
    assert facts["object_name"] == "SimpleServer"
    assert facts["vendor_name"] == "Lithonia Lighting"
    assert facts["instance"] == 111
    assert facts["firmware"] == "1.00"


def test_bacnet_broadcast_capture_builds_no_device_at_a_broadcast_address() -> None:
    addresses = {o.address for o in _import(("bacnet", "bacnet-services.cap"), BacnetProbe())}
    assert addresses == {"192.168.0.16", "192.168.0.24", "192.168.0.50"}


def _snmp_response(community: bytes) -> bytes:
    descr = _tlv(0x30, encode_oid("1.3.6.1.2.1.1.1.0") + _tlv(0x04, b"Linux rtu"))
    pdu = _integer(7) + _integer(0) + _integer(0) + _tlv(0x30, descr)
    return _tlv(0x30, _integer(1) + _tlv(0x04, community) + _tlv(0xA2, pdu))


def test_snmp_decoder_keeps_a_default_community() -> None:
    facts = SnmpProbe().decode_answer(_snmp_response(b"public"))
    assert facts is not None
    assert facts["community"] == "public"
    assert facts["sys_descr"] == "Linux rtu"
    assert facts["snmp_version"] == "v2c"


def test_snmp_decoder_hides_a_site_community() -> None:
    facts = SnmpProbe().decode_answer(_snmp_response(b"s3cr3t-plant"))
    assert facts is not None
    assert "community" not in facts
    assert facts["community_hidden"] is True
    assert "s3cr3t" not in repr(facts)


def test_mqtt_decoder_reads_connack_and_sys_version_but_not_anonymity() -> None:
    topic = b"$SYS/broker/version"
    publish = b"\x00" + bytes((len(topic),)) + topic + b"mosquitto version 2.0.18"
    stream = b"\x20\x02\x00\x00" + b"\x30" + bytes((len(publish),)) + publish
    assert MqttProbe().decode_answer(stream) == {
        "connack_code": 0,
        "connack_reason": "accepted",
        "session_present": False,
        "tls": False,
        "broker_version": "mosquitto version 2.0.18",
        "software": "mosquitto version 2.0.18",
    }


def test_http_decoder_reads_a_plain_response_and_matches_requests() -> None:
    page = b"<html><title>SIMATIC HMI</title><input type=password></html>"
    stream = (
        b"HTTP/1.1 200 OK\r\nServer: Boa/0.94\r\nContent-Length: "
        + str(len(page)).encode()
        + b"\r\n\r\n"
        + page
        + b"HTTP/1.1 404 Not Found\r\n\r\n"
    )
    facts = HttpProbe().decode_answer(stream)
    assert facts is not None
    assert (facts["status"], facts["server"], facts["title"]) == (200, "Boa/0.94", "SIMATIC HMI")
    assert facts["has_login_form"] is True
    assert facts["tls"] is False
    assert HttpProbe().matches_request(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not HttpProbe().matches_request(b"HTTP/1.1 200 OK\r\n")


def test_http_decoder_reads_the_certificate_of_a_recorded_tls12_handshake() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc.example")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    server_hello = bytes((2,)) + (38).to_bytes(3, "big") + bytes(38)
    chain = len(der).to_bytes(3, "big") + der
    message = bytes((11,)) + (len(chain) + 3).to_bytes(3, "big")
    message += len(chain).to_bytes(3, "big") + chain
    handshake = server_hello + message
    # Two records: the certificate message straddles them, as long chains do.
    records = b"".join(
        b"\x16\x03\x03" + len(part).to_bytes(2, "big") + part
        for part in (handshake[:100], handshake[100:])
    )
    facts = HttpProbe().decode_answer(records)
    assert facts is not None
    assert facts["tls"] is True
    assert facts["cert_subject"] == "CN=plc.example"
    assert facts["cert_self_signed"] is True
    assert facts["cert_expired"] is True


def test_telnet_decoder_keeps_nothing_typed_after_the_login_prompt() -> None:
    stream = b"\xff\xfd\x18\xff\xfb\x01Moxa NPort 5110\r\nlogin: operator\r\nPassword: \r\n# "
    facts = TelnetProbe().decode_answer(stream)
    assert facts is not None
    assert facts["banner"] == "Moxa NPort 5110\nlogin:"
    assert facts["prompt"] == "login"
    assert "operator" not in repr(facts)


def test_ftp_and_ssh_decoders_read_greetings() -> None:
    ftp = FtpProbe().decode_answer(b"220-Welcome\r\n220 ProFTPD 1.3.5 Server\r\n331 Password\r\n")
    assert ftp is not None
    assert ftp["code"] == 220
    assert ftp["banner"] == "Welcome\nProFTPD 1.3.5 Server"
    ssh = SshProbe().decode_answer(b"SSH-2.0-dropbear_2019.78\r\n\x00\x00\x01")
    assert ssh is not None
    assert ssh["software"] == "dropbear_2019.78"
    with pytest.raises(ProbeProtocolError):
        FtpProbe().decode_answer(b"USER anonymous\r\n")


# --- hostile bytes -----------------------------------------------------------------------------


class _Recorder:
    """Collects what a decoder would be given, to seed the fuzzers with real recorded bytes."""

    name: ClassVar[str] = "recorder"
    protocol: ClassVar[str] = "recorder"

    def __init__(self, decoder: PassiveDecoder) -> None:
        self.default_ports = decoder.default_ports
        self.transport = decoder.transport
        self.seen: list[bytes] = []

    def decode_answer(self, payload: bytes) -> Facts | None:
        if len(self.seen) < 64:
            self.seen.append(payload[:4096])
        return None


def _hand_seeds(probe: type[PassiveDecoder]) -> list[bytes]:
    """Answers for the protocols without a shared capture, as the tests above build them."""
    topic = b"$SYS/broker/version"
    publish = b"\x00" + bytes((len(topic),)) + topic + b"mosquitto"
    hand: dict[type[PassiveDecoder], list[bytes]] = {
        SnmpProbe: [_snmp_response(b"public")],
        MqttProbe: [b"\x20\x02\x00\x00\x30" + bytes((len(publish),)) + publish],
        HttpProbe: [b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n<title>HMI</title>\r\n"],
        TelnetProbe: [b"\xff\xfd\x18\xff\xfa\x18\x01\xff\xf0Moxa NPort 5110\r\nlogin: "],
        FtpProbe: [b"220-Welcome\r\n220 ProFTPD 1.3.5 Server\r\n"],
        SshProbe: [b"SSH-2.0-dropbear_2019.78\r\n"],
        FinsProbe: [b"FINS" + bytes.fromhex("00000010000000010000000000000000ef0000000a")],
        EnipUdpProbe: [bytes.fromhex("63001e00") + bytes(20) + bytes.fromhex("01000c001200")],
    }
    return hand.get(probe, [])


@functools.cache
def _seeds(probe: type[PassiveDecoder]) -> tuple[bytes, ...]:
    seeds: list[bytes] = [b"", b"\x00" * 32, *_hand_seeds(probe)]
    for capture in DECODERS[probe]:
        recorder = _Recorder(probe())
        path: Path = shared_data("pcaps", *capture)
        list(PcapReaderImporter().observations(path, [recorder]))  # type: ignore[list-item]
        seeds.extend(recorder.seen)
    return tuple(seeds)


def _only_protocol_errors(decoder: PassiveDecoder, data: bytes) -> None:
    try:
        facts = decoder.decode_answer(data)
    except ProbeProtocolError:
        return
    assert facts is None or isinstance(facts, dict)


@pytest.mark.parametrize("probe", list(DECODERS), ids=lambda p: p.name)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_decoder_fuzz_random_bytes_only_raise_protocol_error(
    probe: type[PassiveDecoder], data: bytes
) -> None:
    _only_protocol_errors(probe(), data)


@pytest.mark.parametrize("probe", list(DECODERS), ids=lambda p: p.name)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_decoder_fuzz_mutated_recorded_answers_only_raise_protocol_error(
    probe: type[PassiveDecoder], data: st.DataObject
) -> None:
    _only_protocol_errors(probe(), mutate(data, _seeds(probe)))
