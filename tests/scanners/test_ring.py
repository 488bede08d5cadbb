"""Ring files of a live listener: classic pcap files that rotate at their size, keep only the
newest, and hold the frames as they were read (scapy reads them back)."""

import stat
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from cybermission.scans.passive import RingSpec
from scanners.ring import RingWriter


def _frames(count: int) -> list[bytes]:
    # Both addresses given: scapy would otherwise resolve the destination's (an ARP request).
    link = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return [
        bytes(link / IP(src="127.0.0.1", dst="127.0.0.2") / UDP(dport=47808) / (bytes([i]) * 200))
        for i in range(count)
    ]


def test_ring_rotates_at_its_size_and_keeps_only_the_newest_files(tmp_path: Path) -> None:
    frames = _frames(60)
    ring = RingWriter(RingSpec(directory=tmp_path, file_bytes=2048, files=3), "span0")
    for i, frame in enumerate(frames):
        ring.write(frame, 1_700_000_000 + i / 10)
    ring.close()
    files = ring.files()
    assert len(files) == 3
    assert ring.files_written > 3  # older ones were rotated away
    assert all(f.stat().st_size <= 2048 for f in files)
    kept = [bytes(p) for f in files for p in rdpcap(str(f))]
    assert kept == frames[-len(kept) :]  # the newest frames, in order, unchanged
    assert ring.frames == len(frames)


def test_ring_files_are_private_and_name_their_interface(tmp_path: Path) -> None:
    ring = RingWriter(RingSpec(directory=tmp_path / "ring", file_bytes=1 << 20, files=2), "span0")
    ring.write(_frames(1)[0], 1_700_000_000.25)
    ring.close()
    (path,) = ring.files()
    assert path.name.startswith("span0-")
    assert path.suffix == ".pcap"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # what crossed a mirror port
    (packet,) = rdpcap(str(path))
    assert float(packet.time) == 1_700_000_000.25
