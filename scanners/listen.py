"""The live passive sensor: frames from a mirror (SPAN) interface into the passive decoder.

It opens a Linux ``AF_PACKET`` raw socket for receiving only (:class:`ReceiveOnlySocket` keeps
the socket private and exposes no way to send), attaches a BPF filter compiled by libpcap before
the first packet is read, and gives every frame to the same :class:`~scanners.traffic.
TrafficDecoder` a capture file import uses. Every ``flush_every_s`` (or when enough rows wait)
the services and conversations that changed are handed to ``on_batch``, which records them.
State is bounded by the decoder's caps, whatever the traffic.

Needs ``CAP_NET_RAW`` (root). The interface should carry no address of its own (a mirror port):
the sensor then makes the host send nothing there either.
"""

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from ctypes import addressof
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cybermission.errors import ValidationError
from cybermission.probes import Observation, PassiveDecoder
from cybermission.scans.passive import BatchCallback, ListenStats, RingSpec
from cybermission.traffic import Conversation
from scanners.frames import LINK_ETHERNET, parse_frame
from scanners.ring import RingWriter
from scanners.traffic import TrafficDecoder

if TYPE_CHECKING:
    from scapy.libs.structures import bpf_program

logger = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6  # struct tpacket_stats {tp_packets, tp_drops}, linux/if_packet.h
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20: frames this host sends are not captured
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER_BYTES = 256 * 1024 * 1024  # bursts wait here while the store holds the GIL
MAX_FRAME_BYTES = 65_536
BURST_PACKETS = 512  # frames read per wake-up before the clock and the flush are looked at
FLUSH_ROWS = 4096  # rows waiting that trigger a flush before its time
# Services only seen again (polled) refresh their last sighting this often, not every batch:
# a mirror port repeats the same answers all day.
LAST_SEEN_REFRESH_S = 60.0
# ARPHRD types whose frames start with an Ethernet header (linux/if_arp.h): ether, loopback.
_ETHERNET_LIKE = {"1", "772"}


class ReceiveOnlySocket:
    """An ``AF_PACKET`` socket bound to one interface, for capture only.

    The socket is private to this object, which offers receiving, its statistics and closing:
    nothing in the sensor holds a way to send a frame.
    """

    __slots__ = ("__socket",)

    def __init__(self, interface: str, bpf: str | None) -> None:
        kind = _interface_type(interface)
        if kind not in _ETHERNET_LIKE:
            raise ValidationError(
                f"interface: {interface} is not an Ethernet interface (ARPHRD {kind})"
            )
        # The compiled program must outlive the setsockopt that copies it into the kernel.
        compiled = _compile(bpf) if bpf else None
        program = _sock_fprog(compiled) if compiled is not None else None
        # Protocol 0 receives nothing until bind: no frame of another interface slips in
        # before the filter and the binding are in place.
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise ValidationError(f"interface: capturing needs CAP_NET_RAW ({exc})") from exc
        try:
            if program is not None:
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.bind((interface, ETH_P_ALL))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ValidationError(f"interface: cannot capture on {interface} ({exc})") from exc
        self.__socket = sock

    def fileno(self) -> int:
        return self.__socket.fileno()

    def receive(self) -> bytes | None:
        """The next frame, or ``None`` when none is waiting."""
        try:
            return self.__socket.recv(MAX_FRAME_BYTES)
        except BlockingIOError:
            return None

    def kernel_drops(self) -> int:
        """Frames the filter passed but the buffer could not hold, since the last call (the
        kernel resets its counters when they are read)."""
        raw = self.__socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _passed, dropped = struct.unpack("II", raw)
        return int(dropped)

    def close(self) -> None:
        self.__socket.close()


def _interface_type(interface: str) -> str:
    if not interface or "/" in interface or interface in (".", ".."):
        raise ValidationError(f"interface: {interface!r} is not an interface name")
    try:
        return (Path("/sys/class/net") / interface / "type").read_text().strip()
    except OSError as exc:
        raise ValidationError(f"interface: no interface named {interface!r}") from exc


def _compile(bpf: str) -> "bpf_program":
    """``bpf`` (tcpdump syntax) compiled by libpcap for Ethernet frames."""
    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception

    try:
        return compile_filter(bpf, linktype=LINK_ETHERNET)
    except (Scapy_Exception, ImportError, OSError) as exc:
        raise ValidationError(f"filter: {bpf!r} is not a BPF filter libpcap accepts") from exc


def _sock_fprog(program: "bpf_program") -> bytes:
    """``struct sock_fprog { unsigned short len; struct sock_filter *filter; }`` (64-bit)."""
    return struct.pack("HL", program.bf_len, addressof(program.bf_insns.contents))


class _BatchWriter:
    """Stores batches in a thread of its own, one at a time, so capture goes on meanwhile.

    A batch is handed over only when the writer is idle: while it stores, changes keep
    accumulating in the decoder's bounded state and go with the next batch.
    """

    def __init__(self, on_batch: BatchCallback) -> None:
        self._on_batch = on_batch
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def idle(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def submit(self, observations: list[Observation], conversations: list[Conversation]) -> None:
        self.wait()
        self._thread = threading.Thread(
            target=self._store, args=(observations, conversations), name="listen-store"
        )
        self._thread.start()

    def _store(self, observations: list[Observation], conversations: list[Conversation]) -> None:
        try:
            self._on_batch(observations, conversations)
        except BaseException as exc:  # noqa: BLE001  # handed to the capture thread, re-raised
            self.error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.error is not None:
            raise self.error


class PacketListener:
    """``cybermission listen``'s engine: a receive-only raw socket into the passive decoder."""

    name: ClassVar[str] = "packet"

    def listen(
        self,
        interface: str,
        decoders: Sequence[PassiveDecoder],
        *,
        bpf: str | None,
        on_batch: BatchCallback,
        should_stop: Callable[[], bool],
        flush_every_s: float,
        ring: RingSpec | None = None,
    ) -> ListenStats:
        """Capture until ``should_stop()`` (or a batch fails to store); hand changes to
        ``on_batch`` as it goes and at the end (flows still open are decoded then)."""
        capture = ReceiveOnlySocket(interface, bpf)
        try:
            ring_writer = RingWriter(ring, interface) if ring is not None else None
        except ValidationError:
            capture.close()
            raise
        decoder = TrafficDecoder(decoders)
        stats = ListenStats()
        writer = _BatchWriter(on_batch)
        try:
            self._loop(capture, decoder, stats, writer, should_stop, flush_every_s, ring_writer)
        finally:
            stats.kernel_dropped += capture.kernel_drops()
            capture.close()
            if ring_writer is not None:
                ring_writer.close()
                stats.ring_frames = ring_writer.frames
                stats.ring_files = ring_writer.files_written
            writer.wait()
        decoder.close_all()
        self._flush(decoder, stats, writer, seen_again=True)
        writer.wait()
        stats.state_dropped = decoder.dropped
        return stats

    def _loop(
        self,
        capture: ReceiveOnlySocket,
        decoder: TrafficDecoder,
        stats: ListenStats,
        writer: _BatchWriter,
        should_stop: Callable[[], bool],
        flush_every_s: float,
        ring: RingWriter | None,
    ) -> None:
        next_flush = time.monotonic() + flush_every_s
        next_refresh = time.monotonic() + max(LAST_SEEN_REFRESH_S, flush_every_s)
        while not should_stop() and writer.error is None:
            readable, _, _ = select.select([capture], [], [], 0.2)
            if readable:
                now = time.time()
                for _ in range(BURST_PACKETS):
                    frame = capture.receive()
                    if frame is None:
                        break
                    self._read(frame, decoder, stats, now, ring)
            clock = time.monotonic()
            due = clock >= next_flush or decoder.pending() >= FLUSH_ROWS
            if due and writer.idle():
                stats.kernel_dropped += capture.kernel_drops()
                refresh = clock >= next_refresh
                self._flush(decoder, stats, writer, seen_again=refresh)
                next_flush = clock + flush_every_s
                if refresh:
                    next_refresh = clock + LAST_SEEN_REFRESH_S
        # Frames already queued when the stop came were on the wire before it: read them.
        now = time.time()
        while (frame := capture.receive()) is not None:
            self._read(frame, decoder, stats, now, ring)

    @staticmethod
    def _read(
        frame: bytes,
        decoder: TrafficDecoder,
        stats: ListenStats,
        now: float,
        ring: RingWriter | None,
    ) -> None:
        stats.packets += 1
        stats.bytes += len(frame)
        if ring is not None:
            ring.write(frame, time.time())  # its own instant: a file import reads the gaps
        packet = parse_frame(LINK_ETHERNET, frame)
        if packet is not None:
            decoder.read(packet, now)

    @staticmethod
    def _flush(
        decoder: TrafficDecoder, stats: ListenStats, writer: _BatchWriter, *, seen_again: bool
    ) -> None:
        observations = decoder.drain_observations(seen_again=seen_again)
        conversations = decoder.drain_conversations()
        if observations or conversations:
            stats.batches += 1
            stats.observations += len(observations)
            stats.conversations += len(conversations)
            writer.submit(observations, conversations)
