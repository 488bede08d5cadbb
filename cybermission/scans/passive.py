"""Passive discovery: capture readers and live listeners found by entry point, and the decoders
they may use.

A capture reader (``cybermission.importers`` entry points, e.g. ``scanners.pcap``) turns a file into
observations using the probes' own ``decode_answer``; a listener (``cybermission.listeners``, e.g.
``scanners.listen``) does the same with a mirror interface's traffic, in batches, until stopped.
Both also yield the conversations clients held with the services (the communication map); the
pipeline stores them like any scan's, without a packet sent.
"""

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from cybermission.errors import ValidationError
from cybermission.probes import Observation, PassiveDecoder, load_probes
from cybermission.traffic import Conversation

logger = logging.getLogger(__name__)


@runtime_checkable
class CaptureReader(Protocol):
    name: ClassVar[str]

    def observations(
        self,
        path: Path,
        decoders: Sequence[PassiveDecoder],
        *,
        problems: list[str] | None = None,
        conversations: list[Conversation] | None = None,
    ) -> Iterator[Observation]:
        """The file's observations; damage read past is appended to ``problems`` (the run is
        then partial), a file that cannot be read at all raises ``ValidationError``; the
        conversations seen are appended to ``conversations`` (readers of reports add none)."""
        ...


BatchCallback = Callable[[list[Observation], list[Conversation]], None]


@dataclass(frozen=True, slots=True)
class RingSpec:
    """Rotating ring files of what a listener captured (``scanners/ring.py``): where, how large
    each file grows, and how many of the newest are kept."""

    directory: Path
    file_bytes: int = 64 * 1024 * 1024
    files: int = 8


@dataclass(slots=True)
class ListenStats:
    """What a listener saw: frames read, kernel drops, rows handed over."""

    packets: int = 0
    bytes: int = 0
    kernel_dropped: int = 0  # frames the socket's buffer could not hold (not seen)
    state_dropped: int = 0  # rows that left the bounded state before a batch took them
    batches: int = 0
    observations: int = 0
    conversations: int = 0
    ring_frames: int = 0  # frames written to the ring files
    ring_files: int = 0  # ring files opened (older ones may have been rotated away)


@runtime_checkable
class PassiveListener(Protocol):
    name: ClassVar[str]

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
        """Capture on ``interface`` (receiving only) until ``should_stop()``, handing what
        changed to ``on_batch`` every ``flush_every_s`` and at the end; with ``ring``, every
        frame read is also kept in rotating ring files. A bad interface, filter or ring
        directory raises ``ValidationError`` before anything is read."""
        ...


def passive_decoders() -> list[PassiveDecoder]:
    """Every registered probe that can decode a recorded answer."""
    return [p for p in load_probes().values() if isinstance(p, PassiveDecoder)]


def load_listener(kind: str = "packet") -> PassiveListener:
    for entry in entry_points(group="cybermission.listeners"):
        if entry.name == kind:
            listener = entry.load()()
            if isinstance(listener, PassiveListener):
                return listener
    raise ValidationError(f"listener: no live listener named {kind!r}")


def load_capture_reader(kind: str) -> CaptureReader:
    for entry in entry_points(group="cybermission.importers"):
        if entry.name == kind:
            reader = entry.load()()
            if isinstance(reader, CaptureReader):
                return reader
    raise ValidationError(f"format: no capture reader for {kind!r}")
