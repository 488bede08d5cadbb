"""A site sensor that listens: passive discovery on a mirror port of its site, sent to the centre.

The sensor runs the same live listener as ``cybermission listen`` (``cybermission.listeners``
entry point, receive-only, the decoders ``import pcap`` uses) and turns each batch into
:class:`~cybermission.sensors.messages.TrafficBatch` messages. Each is journalled before it is
published to the site's ``results`` exchange (the link the chunks' results use), so a link that
is down buffers batches instead of losing them; the centre records the session as one passive
run of the site (``sensors/traffic_ingestion.py``).

Only what lies inside the networks the sensor was enrolled for is shipped (a mirror port also
carries other networks' traffic); the centre checks again and refuses a batch that names an
address outside the site.
"""

import logging
import threading
import uuid
from collections.abc import Sequence

from cybermission.probes import Observation
from cybermission.scans.host_messages import ObservationMessage, RunError
from cybermission.scans.passive import ListenStats, RingSpec, load_listener, passive_decoders
from cybermission.sensors.agent import SensorRuntime
from cybermission.sensors.broker import TRAFFIC_KEY_PREFIX
from cybermission.sensors.messages import ConversationMessage, TrafficBatch, write_message
from cybermission.traffic import Conversation

logger = logging.getLogger(__name__)

# Rows (observations and conversations together) per message: a batch of a busy mirror port
# stays far below RabbitMQ's frame and message limits.
BATCH_ROWS = 512


class TrafficShipper:
    """One listening session's batches: filtered to the sensor's networks, journalled, sent."""

    def __init__(self, runtime: SensorRuntime, interface: str) -> None:
        self.runtime = runtime
        self.interface = interface
        self.session_id = uuid.uuid4().hex
        self.seq = 0
        self.outside = 0
        self._lock = threading.Lock()

    def _inside(self, address: str) -> bool:
        return self.runtime.guard.rule_for(address) is not None

    def ship(self, observations: list[Observation], conversations: list[Conversation]) -> None:
        """One batch of the listener, in messages of at most ``BATCH_ROWS`` rows."""
        kept_obs = [o for o in observations if self._inside(o.address)]
        # A conversation belongs to its server's site; the client may be anywhere.
        kept_talks = [c for c in conversations if self._inside(c.server)]
        rows: list[ObservationMessage | ConversationMessage] = [
            *(ObservationMessage.of(o) for o in kept_obs),
            *(ConversationMessage.of(c) for c in kept_talks),
        ]
        with self._lock:
            self.outside += len(observations) - len(kept_obs)
            self.outside += len(conversations) - len(kept_talks)
            for start in range(0, len(rows), BATCH_ROWS):
                self._send(rows[start : start + BATCH_ROWS])

    def finish(self, stats: ListenStats, problems: Sequence[str] = ()) -> None:
        """The session's last message: its capture totals (the centre then ends the run)."""
        with self._lock:
            self._send(
                [],
                last=True,
                packets=stats.packets,
                kernel_dropped=stats.kernel_dropped,
                state_dropped=stats.state_dropped,
                outside=self.outside,
                errors=[RunError(target=self.interface, stage="listen", error=p) for p in problems],
            )

    def _send(
        self,
        rows: Sequence[ObservationMessage | ConversationMessage],
        *,
        last: bool = False,
        packets: int = 0,
        kernel_dropped: int = 0,
        state_dropped: int = 0,
        outside: int = 0,
        errors: Sequence[RunError] = (),
    ) -> None:
        message = TrafficBatch(
            session_id=self.session_id,
            seq=self.seq,
            interface=self.interface,
            observations=[r for r in rows if isinstance(r, ObservationMessage)],
            conversations=[r for r in rows if isinstance(r, ConversationMessage)],
            last=last,
            packets=packets,
            kernel_dropped=kernel_dropped,
            state_dropped=state_dropped,
            outside=outside,
            errors=list(errors),
        )
        key = f"{TRAFFIC_KEY_PREFIX}{self.session_id}.{self.seq}"
        self.runtime.journal.record(key, "done", [write_message(message)])
        self.seq += 1
        # A refusal of the broker leaves the batch in the journal: the flusher retries it.
        self.runtime.flush(key)


def listen_for_site(
    runtime: SensorRuntime,
    interface: str,
    *,
    bpf: str | None,
    stop: threading.Event,
    flush_every_s: float,
    ring: RingSpec | None = None,
) -> ListenStats:
    """Listen on ``interface`` until ``stop`` is set, shipping batches as they come; the last
    message carries the totals. A bad interface or filter raises before anything is read."""
    shipper = TrafficShipper(runtime, interface)
    stats = load_listener().listen(
        interface,
        passive_decoders(),
        bpf=bpf,
        on_batch=shipper.ship,
        should_stop=stop.is_set,
        flush_every_s=flush_every_s,
        ring=ring,
    )
    problems: list[str] = []
    if stats.kernel_dropped:
        problems.append(f"{stats.kernel_dropped} frames dropped by the kernel: not seen")
    if stats.state_dropped:
        problems.append(f"{stats.state_dropped} rows left the bounded state unrecorded")
    shipper.finish(stats, problems)
    logger.info(
        "listening ended",
        extra={
            "interface": interface,
            "session_id": shipper.session_id,
            "packets": stats.packets,
            "batches": shipper.seq,
            "outside": shipper.outside,
        },
    )
    return stats
