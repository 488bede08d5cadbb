"""What sites and the centre send each other: typed, versioned messages (pydantic), never dicts.

Four messages cross the broker: a :class:`ChunkMessage` from the centre to a site's sensor (the
work), a :class:`ResultsPart` from the sensor back (up to ``PART_HOSTS`` host reports; the last
part of a chunk carries its totals), a :class:`TrafficBatch` from a sensor that listens on a
mirror port (what its passive decoder saw since the previous batch; the last one carries the
listening session's totals), and a :class:`CancelNotice` from the centre to the site's sensors
when a run is cancelled. Each carries ``version``; a side reads only the version it
was built for and refuses any other, or a malformed message, with a :class:`MessageError` that
says which message, which field and what was expected. Refusing loses nothing: the sensor's
journal keeps every part it sent and every chunk it refused (``journal.py``), and the centre
records each refusal with its reason (``RejectedPart``).

Both sides import this module; it holds no store code (the probing side's import contract).
"""

from collections.abc import Mapping
from datetime import UTC
from typing import Annotated, Any, ClassVar, Final, Literal, Self, TypeVar

from pydantic import AwareDatetime, Field
from pydantic import ValidationError as PydanticValidationError

from cybermission.errors import ValidationError
from cybermission.probes import Observation, Transport
from cybermission.scans.host_messages import (
    Count,
    HostReportMessage,
    ObservationMessage,
    Port,
    RunError,
    StrictMessage,
)
from cybermission.scans.probing import HostReport
from cybermission.traffic import Conversation, FunctionClass

# The version of the messages this code writes and the only one it reads. Raise it when a field
# changes meaning or a required one is added, so a sensor and a centre of different releases
# refuse each other's messages in clear instead of misreading them.
MESSAGE_VERSION: Final = 1

ChunkOutcome = Literal["done", "skipped", "failed"]


class MessageError(ValidationError):
    """A message of another version, or malformed: refused whole, nothing of it applied."""

    def __init__(self, message: str, *, unsupported_version: bool = False) -> None:
        super().__init__(message)
        self.unsupported_version = unsupported_version


class _Versioned(StrictMessage):
    kind: ClassVar[str]
    version: Literal[1] = MESSAGE_VERSION


class ChunkMessage(_Versioned):
    """The centre's order to a site's sensor: probe these targets before ``not_after``."""

    kind: ClassVar[str] = "chunk"

    chunk_id: str
    scan_run_id: str
    seq: Count
    targets: list[str]
    ports: list[Port]
    udp_ports: list[Port] = []
    not_after: AwareDatetime
    attempt: Count = 0


class ResultsPart(_Versioned):
    """Part ``part`` of a chunk's results; the ``last`` one carries the chunk's totals."""

    kind: ClassVar[str] = "results part"

    chunk_id: str
    scan_run_id: str
    part: Count
    state: ChunkOutcome
    reports: list[HostReportMessage] = []
    last: bool = False
    hosts_swept: Count = 0
    hosts_live: Count = 0
    open_ports: Count = 0
    errors: list[RunError] = []

    def host_reports(self) -> list[HostReport]:
        return [r.report() for r in self.reports]


class ConversationMessage(StrictMessage):
    """One row of the communication map (:class:`~cybermission.traffic.Conversation`)."""

    client: str
    server: str
    port: Port
    transport: Transport
    protocol: str
    function: FunctionClass
    packets: Count
    first_seen_at: AwareDatetime
    last_seen_at: AwareDatetime

    @classmethod
    def of(cls, c: Conversation) -> Self:
        return cls(
            client=c.client,
            server=c.server,
            port=c.port,
            transport=c.transport,
            protocol=c.protocol,
            function=c.function,
            packets=c.packets,
            first_seen_at=c.first_seen_at,
            last_seen_at=c.last_seen_at,
        )

    def conversation(self) -> Conversation:
        return Conversation(
            client=self.client,
            server=self.server,
            port=self.port,
            transport=self.transport,
            protocol=self.protocol,
            function=self.function,
            packets=self.packets,
            first_seen_at=self.first_seen_at.astimezone(UTC),
            last_seen_at=self.last_seen_at.astimezone(UTC),
        )


class TrafficBatch(_Versioned):
    """Batch ``seq`` of a sensor's listening session ``session_id`` on ``interface``: the
    services and conversations its passive decoder saw change; the ``last`` one carries the
    session's capture totals. The centre records a session as one passive run of the site."""

    kind: ClassVar[str] = "traffic batch"

    session_id: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[0-9a-f]+$")]
    seq: Count
    interface: Annotated[str, Field(min_length=1, max_length=64)]
    observations: list[ObservationMessage] = []
    conversations: list[ConversationMessage] = []
    last: bool = False
    packets: Count = 0
    kernel_dropped: Count = 0
    state_dropped: Count = 0
    # Rows the sensor kept to itself: addresses outside the networks it was enrolled for.
    outside: Count = 0
    errors: list[RunError] = []

    def observations_seen(self) -> list[Observation]:
        return [o.observation() for o in self.observations]

    def conversations_seen(self) -> list[Conversation]:
        return [c.conversation() for c in self.conversations]


class CancelNotice(_Versioned):
    """The centre's notice to a site's sensors: the run was cancelled; probe none of its chunks,
    and stop the one under way. ``until`` is the end of its chunks' window: past it, a chunk of
    the run is skipped anyway, so the notice can be forgotten."""

    kind: ClassVar[str] = "cancel notice"

    scan_run_id: str
    reason: str
    until: AwareDatetime


M = TypeVar("M", bound=_Versioned)


def read_message(model: type[M], data: object) -> M:
    """``data`` (decoded JSON) as a ``model``; :class:`MessageError` saying why it is refused."""
    if not isinstance(data, Mapping):
        raise MessageError(f"{model.kind}: expected a JSON object, got {type(data).__name__}")
    version = data.get("version")
    if version is None:
        raise MessageError(f"{model.kind}: no version: not a message of this product")
    if version != MESSAGE_VERSION:
        raise MessageError(
            f"{model.kind}: version {version!r} is not read here (this side reads version"
            f" {MESSAGE_VERSION}): upgrade the older side; the message is kept, not applied",
            unsupported_version=True,
        )
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise MessageError(f"{model.kind}: {where}: {first['msg']}{more}") from exc


def write_message(message: _Versioned) -> dict[str, Any]:
    """The message as the JSON object the broker carries (Celery's JSON serializer)."""
    return message.model_dump(mode="json")
