"""Passive discovery: capture readers found by entry point, and the decoders they may use.

A capture reader (``cybermission.importers`` entry points, e.g. ``scanners.pcap``) turns a file into
observations using the probes' own ``decode_answer``; the pipeline stores them like any scan's,
without a packet sent.
"""

import logging
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from cybermission.errors import ValidationError
from cybermission.probes import Observation, PassiveDecoder, load_probes

logger = logging.getLogger(__name__)


@runtime_checkable
class CaptureReader(Protocol):
    name: ClassVar[str]

    def observations(
        self, path: Path, decoders: Sequence[PassiveDecoder], *, problems: list[str] | None = None
    ) -> Iterator[Observation]:
        """The file's observations; damage read past is appended to ``problems`` (the run is
        then partial), a file that cannot be read at all raises ``ValidationError``."""
        ...


def passive_decoders() -> list[PassiveDecoder]:
    """Every registered probe that can decode a recorded answer."""
    return [p for p in load_probes().values() if isinstance(p, PassiveDecoder)]


def load_capture_reader(kind: str) -> CaptureReader:
    for entry in entry_points(group="cybermission.importers"):
        if entry.name == kind:
            reader = entry.load()()
            if isinstance(reader, CaptureReader):
                return reader
    raise ValidationError(f"format: no capture reader for {kind!r}")
