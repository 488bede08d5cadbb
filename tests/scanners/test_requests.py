"""Function classes of real clients' requests (scanners/requests.py), read from the shared
captures through the passive decoder: what a communication map shows of each."""

import random
from collections import Counter
from collections.abc import Callable

import pytest

from cybermission.scans.passive import passive_decoders
from cybermission.traffic import Conversation, FunctionClass
from scanners import requests
from scanners.pcap import PcapReaderImporter
from tests.conftest import shared_data


def _classes(*parts: str) -> Counter[tuple[str, str]]:
    conversations: list[Conversation] = []
    list(
        PcapReaderImporter().observations(
            shared_data("pcaps", *parts), passive_decoders(), conversations=conversations
        )
    )
    found: Counter[tuple[str, str]] = Counter()
    for c in conversations:
        found[(c.protocol, str(c.function))] += c.packets
    return found


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        (("s7", "s7_download_block.pcap"), ("s7comm", "program")),
        (("s7", "s7_stop.pcap"), ("s7comm", "control")),
        (("s7", "s7_read_clock.pcap"), ("s7comm", "diagnostic")),
        (("modbus", "mod_5.pcap"), ("modbus", "write")),
        (("modbus", "mod_3.pcap"), ("modbus", "read")),
        (("modbus", "Modbus_Program_Command_to_Quantum.pcap"), ("modbus", "program")),
        (("umas", "umas.pcap"), ("modbus", "program")),
        (("dnp3", "cold_restart_and_response.pcap"), ("dnp3", "control")),
        (("dnp3", "directoperate_and_response.pcap"), ("dnp3", "write")),
        (("dnp3", "read_and_response.pcap"), ("dnp3", "read")),
        (("iec104", "iec104.pcap"), ("iec104", "write")),
        (("bacnet", "bacnet.pcap"), ("bacnet", "read")),
        (("enip", "cip.pcap"), ("enip", "write")),
    ],
)
def test_requests_of_a_real_capture_are_classified(
    capture: tuple[str, str], expected: tuple[str, str]
) -> None:
    assert _classes(*capture)[expected] > 0


def test_requests_of_a_read_only_capture_hold_no_change() -> None:
    found = _classes("dnp3", "read_and_response.pcap")
    assert set(found) == {("dnp3", "read")}  # the outstation's response is not a request


def test_requests_on_a_port_two_protocols_share_go_to_the_one_that_reads_them() -> None:
    # Port 102 is S7comm's and MMS's: the S7 classifier claims the S7 jobs.
    assert {p for p, _ in _classes("s7", "s7_all.pcap")} == {"s7comm"}


# The first bytes of each protocol's frames, so random tails reach past the magic checks.
HEADS = [b"", b"\x00\x01\x00\x00\x00\x06\x01", b"\x03\x00\x00\x1f\x02\xf0\x80\x32",
         b"\x05\x64\x20\xc4", b"\x68\x0e", b"\x81\x0a\x00\x11\x01", b"\x6f\x00"]  # fmt: skip


@pytest.mark.parametrize(
    "classify",
    [
        requests.classify_modbus,
        requests.classify_s7,
        requests.classify_dnp3,
        requests.classify_iec104,
        requests.classify_bacnet,
        requests.classify_enip,
        requests.classify_ftp,
        requests.classify_http,
    ],
)
def test_requests_classifiers_never_raise_on_hostile_bytes(
    classify: Callable[[bytes], FunctionClass | None],
) -> None:
    generator = random.Random(16)
    for head in HEADS:
        for size in range(64):
            for _ in range(20):
                tail = bytes(generator.randrange(256) for _ in range(size))
                found = classify(head + tail)  # any exception fails the test
                assert found is None or isinstance(found, FunctionClass)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"USER maint\r\n", FunctionClass.LOGIN),
        (b"PASS s3cret\r\n", FunctionClass.LOGIN),
        (b"STOR plc.bin\r\n", FunctionClass.WRITE),
        (b"RETR plc.bin\r\n", FunctionClass.READ),
        (b"220 ready\r\n", None),  # a greeting is the server's, not a request
    ],
)
def test_requests_ftp_logins_are_seen(payload: bytes, expected: FunctionClass | None) -> None:
    assert requests.classify_ftp(payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"GET /cgi/io HTTP/1.1\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\n\r\n", "login"),
        (b"POST /setpoint HTTP/1.1\r\nHost: plc\r\n\r\nv=1", "write"),
        (b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n", "read"),
        (b"HTTP/1.1 200 OK\r\n\r\n", None),
        (b"\x16\x03\x01\x02\x00\x01", None),  # a TLS ClientHello on 443
    ],
)
def test_requests_http_basic_credentials_are_a_login(payload: bytes, expected: str | None) -> None:
    found = requests.classify_http(payload)
    assert (str(found) if found else None) == expected
