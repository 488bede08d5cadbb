"""The capture reader: frames unwrapped, TCP directions reassembled within bounds, nothing sent."""

from pathlib import Path
from typing import ClassVar

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

import scanners.traffic
from cybermission.probes import Facts, Transport
from scanners.pcap import PcapReaderImporter
from scanners.s7 import S7Probe
from tests.conftest import shared_data

SERVER, CLIENT = "10.0.0.2", "10.0.0.9"


class _Recorder:
    """Records every payload it is given; answers with its length when asked to."""

    name: ClassVar[str] = "recorder"
    protocol: ClassVar[str] = "recorder"
    default_ports: ClassVar[tuple[int, ...]] = (5000,)
    transport: ClassVar[Transport] = Transport.TCP

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def decode_answer(self, payload: bytes) -> Facts | None:
        self.seen.append(payload)
        return {"bytes": len(payload)}


def _segments(chunks: list[bytes], *, seq: int = 1000, port: int = 5000) -> list[Packet]:
    packets: list[Packet] = [
        Ether() / IP(src=SERVER, dst=CLIENT) / TCP(sport=port, dport=40000, flags="SA", seq=seq)
    ]
    seq += 1
    for chunk in chunks:
        packets.append(
            Ether()
            / IP(src=SERVER, dst=CLIENT)
            / TCP(sport=port, dport=40000, flags="PA", seq=seq)
            / Raw(chunk)
        )
        seq += len(chunk)
    packets.append(
        Ether() / IP(src=SERVER, dst=CLIENT) / TCP(sport=port, dport=40000, flags="FA", seq=seq)
    )
    return packets


def _write(tmp_path: Path, packets: list[Packet], name: str = "c.pcap") -> Path:
    path = tmp_path / name
    wrpcap(str(path), packets)
    return path


def test_pcap_reassembles_a_direction_and_feeds_the_whole_stream(tmp_path: Path) -> None:
    recorder = _Recorder()
    path = _write(tmp_path, _segments([b"abc", b"def", b"ghi"]))
    (observation,) = PcapReaderImporter().observations(path, [recorder])
    assert recorder.seen == [b"abc", b"def", b"ghi", b"abcdefghi"]
    assert observation.facts["bytes"] == 9  # the stream's facts win over a segment's
    assert (observation.address, observation.port) == (SERVER, 5000)


def test_pcap_keeps_only_new_bytes_of_a_retransmission(tmp_path: Path) -> None:
    recorder = _Recorder()
    packets = _segments([b"abc", b"def"])
    packets.insert(2, packets[1].copy())  # "abc" sent twice
    packets[3][TCP].seq -= 1  # "def" overlapping the last byte of "abc"
    packets[3][Raw].load = b"cdef"
    list(PcapReaderImporter().observations(_write(tmp_path, packets), [recorder]))
    assert recorder.seen[-1] == b"abcdef"


def test_pcap_restarts_the_stream_at_a_gap(tmp_path: Path) -> None:
    recorder = _Recorder()
    packets = _segments([b"abc", b"def", b"ghi", b"jkl"])
    del packets[2]  # "def" is missing from the capture
    list(PcapReaderImporter().observations(_write(tmp_path, packets), [recorder]))
    assert b"ghijkl" in recorder.seen
    assert not any(b"abc" in seen and b"ghi" in seen for seen in recorder.seen)


def test_pcap_bounds_each_flow_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanners.traffic, "MAX_FLOW_BYTES", 6)
    recorder = _Recorder()
    path = _write(tmp_path, _segments([b"abc", b"def", b"ghi", b"jklmnopq"]))
    list(PcapReaderImporter().observations(path, [recorder]))
    # Segments are decoded as they come; a stream only up to the bound, then it restarts.
    assert recorder.seen == [b"abc", b"def", b"ghi", b"abcdef", b"jklmnopq"]


def test_pcap_bounds_the_number_of_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanners.traffic, "MAX_FLOWS", 1)
    recorder = _Recorder()
    first, second = _segments([b"ab", b"cd"]), _segments([b"12", b"34"], port=5000)
    for packet in second:
        packet[TCP].dport = 40001
    interleaved = [first[0], second[0], first[1], second[1], first[2], second[2]]
    list(PcapReaderImporter().observations(_write(tmp_path, interleaved), [recorder]))
    # Each new flow evicts (and decodes) the other one: no stream grows past one flow's share.
    assert b"abcd" not in recorder.seen
    assert b"ab" in recorder.seen
    assert b"34" in recorder.seen


def test_pcap_decodes_an_s7_answer_split_into_small_segments(tmp_path: Path) -> None:
    # The SZL 0x001C answer of s7_all.pcap, cut into 16-byte segments: no segment decodes alone.
    recorder = _Recorder()
    recorder.default_ports = (102,)  # type: ignore[misc]
    list(PcapReaderImporter().observations(shared_data("pcaps", "s7", "s7_all.pcap"), [recorder]))
    answer = next(s for s in recorder.seen if b"S C-JNS406642017" in s and b"SIMATIC" in s)
    chunks = [answer[i : i + 16] for i in range(0, len(answer), 16)]
    (observation,) = PcapReaderImporter().observations(
        _write(tmp_path, _segments(chunks, port=102)), [S7Probe()]
    )
    assert observation.facts["serial"] == "S C-JNS406642017"
    assert all(S7Probe().decode_answer(chunk) is None for chunk in chunks)


@pytest.mark.parametrize(
    "frame",
    [
        Ether() / Dot1Q(vlan=7) / IP(src=SERVER, dst=CLIENT),
        CookedLinux(proto=0x0800) / IP(src=SERVER, dst=CLIENT),
        Ether() / IPv6(src="fd00::2", dst="fd00::9"),
    ],
    ids=["vlan", "linux-sll", "ipv6"],
)
def test_pcap_unwraps_link_and_network_layers(tmp_path: Path, frame: Packet) -> None:
    recorder = _Recorder()
    recorder.transport = Transport.UDP  # type: ignore[misc]
    path = _write(tmp_path, [frame / UDP(sport=5000, dport=40000) / Raw(b"answer")])
    (observation,) = PcapReaderImporter().observations(path, [recorder])
    assert recorder.seen == [b"answer"]
    assert observation.address in (SERVER, "fd00::2")


def test_pcap_drops_ethernet_padding(tmp_path: Path) -> None:
    recorder = _Recorder()
    recorder.transport = Transport.UDP  # type: ignore[misc]
    frame = Ether() / IP(src=SERVER, dst=CLIENT) / UDP(sport=5000, dport=40000) / Raw(b"ok")
    padded = Ether(bytes(frame) + bytes(20))
    list(PcapReaderImporter().observations(_write(tmp_path, [padded]), [recorder]))
    assert recorder.seen == [b"ok"]


def test_pcap_records_a_syn_ack_as_an_open_port(tmp_path: Path) -> None:
    path = _write(tmp_path, _segments([], port=9999))
    (observation,) = PcapReaderImporter().observations(path, [])
    assert (observation.port, observation.protocol, observation.probe) == (9999, "tcp", "passive")
