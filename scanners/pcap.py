"""Passive discovery from a packet capture file (pcap or pcapng, scapy's raw readers), sending
nothing.

Each frame is parsed by ``scanners/frames.py`` and given to the one passive decoder
(``scanners/traffic.py``) that the live sensor uses too: services and facts from what devices
sent, conversations from what clients asked. Captures are data: the addresses in them are
recorded, never contacted.
"""

import logging
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar, cast

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

from cybermission.errors import ValidationError
from cybermission.probes import Observation, PassiveDecoder
from cybermission.traffic import Conversation
from scanners.frames import parse_frame
from scanners.traffic import TrafficDecoder

logger = logging.getLogger(__name__)

MAX_PACKETS = 5_000_000  # a capture is data; bound the work on a hostile or huge file


class PcapReaderImporter:
    """Reads pcap and pcapng files (scapy's raw readers; the format is detected)."""

    name: ClassVar[str] = "pcap"

    def observations(
        self,
        path: Path,
        decoders: Sequence[PassiveDecoder],
        *,
        problems: list[str] | None = None,
        conversations: list[Conversation] | None = None,
    ) -> Iterator[Observation]:
        """One observation per (address, port, transport, probe) seen answering.

        A damaged capture (a record cut short, bytes left after the last whole record, a block
        the reader cannot parse) is read up to the damage; what went wrong is appended to
        ``problems``. A capture of which not one packet can be read is refused. The requests
        clients sent to known services are appended to ``conversations`` (the communication map).
        """
        capture = TrafficDecoder(decoders)
        _check_magic(path)
        found = problems if problems is not None else []
        try:
            reader = RawPcapReader(str(path))
        except (OSError, Scapy_Exception) as exc:
            raise ValidationError(f"file: {path} is not a pcap or pcapng capture ({exc})") from exc
        count = read = 0  # records met, records read whole
        consumed = 24  # a pcap's global header; each record adds 16 and its captured length
        with reader:
            try:
                for count, (frame, meta) in enumerate(reader, start=1):
                    if count > MAX_PACKETS:
                        logger.warning("capture truncated", extra={"path": str(path)})
                        break
                    if isinstance(reader, RawPcapNgReader):
                        # scapy's stubs type the metadata as pcap's; pcapng readers yield theirs.
                        ng = cast(RawPcapNgReader.PacketMetadata, meta)
                        link_type = ng.linktype
                        seen_at = ((ng.tshigh << 32) | ng.tslow) / ng.tsresol
                    else:
                        if len(frame) < meta.caplen:
                            found.append(
                                f"packet {count}: {len(frame)} of its {meta.caplen} bytes, "
                                "the capture is cut or damaged there; the rest is not read"
                            )
                            break
                        consumed += 16 + meta.caplen
                        link_type = reader.linktype
                        fraction = 1e9 if getattr(reader, "nano", False) else 1e6
                        seen_at = meta.sec + meta.usec / fraction
                    read += 1
                    packet = parse_frame(link_type, frame)
                    if packet is not None:
                        capture.read(packet, seen_at)
                else:
                    size = path.stat().st_size
                    if not isinstance(reader, RawPcapNgReader) and consumed < size:
                        found.append(
                            f"after packet {read}: {size - consumed} bytes that are not a whole "
                            "record (the capture is cut short)"
                        )
            except (Scapy_Exception, struct.error, ValueError) as exc:
                found.append(f"after packet {read}: {exc}; the rest is not read")
        if read == 0 and found:
            raise ValidationError(f"file: {path}: no packet could be read ({found[0]})")
        capture.close_all()
        if conversations is not None:
            conversations.extend(capture.drain_conversations())
        yield from capture.drain_observations()


# pcap (both byte orders, micro- and nanosecond) and pcapng section header magics.
_MAGICS = {bytes.fromhex(m) for m in ("a1b2c3d4", "d4c3b2a1", "a1b23c4d", "4d3cb2a1", "0a0d0d0a")}


def _check_magic(path: Path) -> None:
    try:
        with path.open("rb") as capture:
            magic = capture.read(4)
    except OSError as exc:
        raise ValidationError(f"file: cannot read {path} ({exc.strerror})") from exc
    if magic not in _MAGICS:
        raise ValidationError(f"file: {path} is not a pcap or pcapng capture")
