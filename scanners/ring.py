"""Rotating ring files of what a live listener captured, for a later ``import pcap``.

Frames that passed the listener's filter are appended to classic pcap files (Ethernet link type,
microsecond timestamps: what ``import pcap``, tcpdump and Wireshark read) in one directory. A file
is closed when it reaches ``file_bytes`` and the next one opened; only the newest ``files`` of
this interface are kept, the oldest deleted first, so the ring's disk use is bounded whatever the
traffic (about ``files * file_bytes``). Files are named ``<interface>-<UTC start>-<seq>.pcap``, so
their names sort in capture order, across restarts too. They are created mode 0600: a mirror
port carries whatever crossed it, credentials in clear included.
"""

import os
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from cybermission.errors import ValidationError
from cybermission.scans.passive import RingSpec
from scanners.frames import LINK_ETHERNET

# pcap file header (magic, version 2.4, zone, sigfigs, snaplen, link type), libpcap's format.
_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65_535, LINK_ETHERNET)
_RECORD = struct.Struct("<IIII")  # seconds, microseconds, bytes kept, bytes on the wire


class RingWriter:
    """Appends frames to the ring of ``interface`` in ``spec.directory``."""

    def __init__(self, spec: RingSpec, interface: str) -> None:
        self._spec = spec
        self._interface = interface
        self._file: BinaryIO | None = None
        self._written = 0
        self._seq = 0
        self._started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.files_written = 0
        self.frames = 0
        try:
            spec.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValidationError(f"ring: cannot use {spec.directory} ({exc})") from exc
        self._open_next()

    def files(self) -> list[Path]:
        """The ring's files of this interface, oldest first."""
        return sorted(self._spec.directory.glob(f"{self._interface}-*.pcap"))

    def write(self, frame: bytes, at: float) -> None:
        if self._file is None:
            return
        if self._written + _RECORD.size + len(frame) > self._spec.file_bytes and self._written:
            self._open_next()
            assert self._file is not None
        seconds = int(at)
        self._file.write(
            _RECORD.pack(seconds, int((at - seconds) * 1_000_000), len(frame), len(frame))
        )
        self._file.write(frame)
        self._written += _RECORD.size + len(frame)
        self.frames += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open_next(self) -> None:
        self.close()
        name = f"{self._interface}-{self._started}-{self._seq:06d}.pcap"
        self._seq += 1
        path = self._spec.directory / name
        # The oldest go first, so that with the new one there are at most ``files``.
        for old in self.files()[: max(len(self.files()) - self._spec.files + 1, 0)]:
            old.unlink(missing_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise ValidationError(f"ring: cannot write {path} ({exc})") from exc
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._file.write(_PCAP_HEADER)
        self._written = len(_PCAP_HEADER)
        self.files_written += 1
