"""One gate per device for a whole run: its pace, its one conversation at a time, its strikes.

DESIGN.md §2 asks for a per-host rate and one TCP connection per device at a time *across the
run*, and for a device that resets, closes early or slows down to be left alone. The sweep and
the probes reach a device in turn: the sweep paces its connects with a :class:`Pace`, hands the
pace's next allowed moment on with the host's result (``HostResult.next_contact_at``, a monotonic
time, so it crosses probe processes too), and the probe phase resumes the same pace in the
host's :class:`DeviceGate` entry. Every connect and every UDP session of a probe then waits for
that pace (:meth:`DeviceGate.contact`), probes take the device's one turn at a time
(:meth:`DeviceGate.turn`), and the pipeline books each reset, early close or silence as a strike
(:meth:`DeviceGate.strike`): after ``strikes_before_back_off`` strikes in a row the device is
backed off for the rest of the run and the run names it. A good answer clears the streak, so one
port that speaks another protocol never backs a healthy device off.

State is kept only while a host is in the probe phase (:meth:`DeviceGate.release`), so memory
follows the hosts in flight, not the size of the range; the names of backed-off devices stay.
"""

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, Protocol

#: Strikes in a row that back a device off, unless the pacing settings say otherwise.
DEFAULT_STRIKES_BEFORE_BACK_OFF: Final = 3
#: Answers remembered to judge how long devices take now, and what a timeout must allow.
ANSWER_SAMPLES: Final = 64
#: A probe is given this many times the slow end (9 in 10) of recent answers' durations ...
ANSWER_TIMEOUT_FACTOR: Final = 3.0
#: ... but never more than this many times the configured timeout.
ANSWER_TIMEOUT_CAP: Final = 8.0
#: Until this many answers were measured, probes get the configured timeout times the next
#: factor: a run's first probes meet devices still busy with the sweep's connections (seen: the
#: first window of 64, and only it, timed out at load 6), and nothing was measured yet (TCP
#: starts with a conservative retransmission timeout for the same reason, RFC 6298 §2.1).
ANSWER_SAMPLES_FIRST: Final = 8
ANSWER_TIMEOUT_FIRST_FACTOR: Final = 4.0


class AnswerTimes:
    """How long recent probes that got an answer took; the timeout and the window that follow.

    A configured timeout suits an idle machine; on a busy one (this process or the devices'
    network starved of CPU) every answer takes longer, and a fixed timeout turns slow answers
    into losses (issue: the lab profile identified 0 to 147 of 1,024 devices under load). As
    nmap adapts its timeouts to measured round trips, a probe here is given
    ``max(configured, 3 x the 90th percentile of the last 64 answers)``, capped at 8 x the
    configured value; 4 x the configured value until 8 answers were measured, for TCP probes
    (``timeout_s``; a UDP probe gets ``measured_timeout_s``: scans/probing.py says why).
    Silences never feed it: a dead device cannot stretch the timeouts.

    The window is how many hosts may be identified at once, up to ``max_in_flight``: more in
    flight does not answer faster on a busy machine, it only makes each probe wait longer for
    the loop and the devices (measured at load 10 on 1,024 devices: 256 in flight lost 309
    identities, 64 lost 101, 32 lost 4, all in the same time). As TCP does with its congestion
    window, a silence halves it and each answer widens it by one over its size; silences
    within one configured timeout of the last halving are the same congestion and halve once.
    """

    def __init__(self, configured_s: float, max_in_flight: int = 64) -> None:
        self.configured_s = configured_s
        self.max_in_flight = max_in_flight
        self._samples: deque[float] = deque(maxlen=ANSWER_SAMPLES)
        self._timeout_s = configured_s * ANSWER_TIMEOUT_FIRST_FACTOR
        self._window = float(max_in_flight)
        self._halved_at = float("-inf")

    @property
    def window(self) -> int:
        """Hosts that may be in identification now (at least one)."""
        return max(1, int(self._window))

    def silence(self, now: float | None = None) -> None:
        """A probe got no answer in time: fewer at once."""
        moment = time.monotonic() if now is None else now
        if moment - self._halved_at < self.configured_s:
            return
        self._halved_at = moment
        self._window = max(1.0, self._window / 2)

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @property
    def measured_timeout_s(self) -> float:
        """The timeout the measured answers call for, without the first answers' widening:
        the configured one until ``ANSWER_SAMPLES_FIRST`` answers were measured."""
        if len(self._samples) < ANSWER_SAMPLES_FIRST:
            return self.configured_s
        return self._timeout_s

    def record(self, duration_s: float) -> None:
        self._window = min(float(self.max_in_flight), self._window + 1 / self._window)
        self._samples.append(duration_s)
        if len(self._samples) < ANSWER_SAMPLES_FIRST:
            return
        ranked = sorted(self._samples)
        slow = ranked[min(len(ranked) - 1, int(len(ranked) * 0.9))]
        self._timeout_s = min(
            max(self.configured_s, ANSWER_TIMEOUT_FACTOR * slow),
            ANSWER_TIMEOUT_CAP * self.configured_s,
        )


class Pace:
    """GCRA token bucket: a send conforms when ``wait_s`` is 0, and ``take`` then books it.

    Judged on the clock at send time, never by reserving a future slot: a reserved slot lets a
    late-woken sender and an on-time one leave closer together than the rate allows. With burst 1
    two sends are never closer than ``1 / rate_per_s``. The event loop is single-threaded, so
    checking and booking need no lock.

    Senders that must wait queue in a line (:meth:`hold`), served in arrival order: one timer
    per send wakes only the first in line, once the pace conforms, instead of every waiter
    sleeping for the same moment, waking together and all but one sleeping again (a thundering
    herd: O(waiters) wake-ups per send, issue 12). The sender at the head *holds* the pace: no
    one else may book it until it books (:meth:`take`) or gives its turn up (:meth:`leave`),
    which it does before it awaits anything else, so the send still leaves on the clock it was
    judged by.
    """

    __slots__ = ("_clock", "_held", "_interval", "_line", "_tat", "_timer", "_tolerance")

    def __init__(self, rate_per_s: float, burst: float = 1.0, *, resume_at: float = 0.0) -> None:
        self._interval = 1.0 / rate_per_s
        self._tolerance = max(burst - 1.0, 0.0) * self._interval
        self._tat = resume_at
        # Waiters in arrival order (made on the first wait: most paces never have one).
        self._line: deque[asyncio.Future[None]] | None = None
        self._held = False
        self._timer: asyncio.TimerHandle | None = None
        self._clock: Callable[[], float] = time.monotonic  # the waiters' (``hold``)

    @property
    def next_at(self) -> float:
        """The earliest moment (same clock as ``take``) the next send conforms at burst 1."""
        return self._tat

    def wait_s(self, now: float) -> float:
        return self._tat - self._tolerance - now

    def ready(self, now: float) -> bool:
        """A send conforms now and nobody is before it: book it at once (``take``)."""
        return not self._held and not self._line and self._tat - self._tolerance <= now

    def take(self, now: float) -> None:
        """Book a send at ``now``; a holder's turn ends with it, the next in line is served."""
        self._tat = (self._tat if self._tat > now else now) + self._interval
        if self._held:
            self._held = False
            if self._line:
                self._serve(now)

    def leave(self) -> None:
        """The holder gives its turn up without sending (cancelled, or the guard refused)."""
        if self._held:
            self._held = False
            if self._line:
                self._serve(None)

    async def hold(self, clock: Callable[[], float]) -> float:
        """Wait in line until first and the send conforms; return the moment (``clock``'s).

        The caller then holds the pace and must ``take`` or ``leave`` before awaiting anything
        else. ``clock`` is the clock the pace is booked with; it must advance with the event
        loop's (``time.monotonic``, or ``loop.time``).
        """
        now = clock()
        if self.ready(now):
            self._held = True
            return now
        self._clock = clock
        line = self._line
        if line is None:
            line = self._line = deque()
        waiter = asyncio.get_running_loop().create_future()
        line.append(waiter)
        if len(line) == 1 and not self._held:
            self._serve(now)
        try:
            while True:
                await waiter
                now = clock()
                wait = self.wait_s(now)
                if wait <= 0:
                    break
                # Woken early (a clock that lags the loop's): wait again, still first in line.
                waiter = asyncio.get_running_loop().create_future()
                line[0] = waiter
                self._arm(wait)
        except BaseException:
            self._drop(waiter)
            raise
        line.popleft()
        self._held = True
        return now

    def _serve(self, now: float | None) -> None:
        """Wake the first in line if the pace conforms, else time its wake-up (one timer)."""
        line = self._line
        if not line or self._held:
            return
        head = line[0]
        if head.done():  # already woken, about to take its turn
            return
        if now is None:
            now = self._clock()
        wait = self.wait_s(now)
        if wait <= 0:
            self._disarm()
            head.set_result(None)
        else:
            self._arm(wait)

    def _arm(self, wait: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(wait, self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        line = self._line
        if line and not self._held and not line[0].done():
            line[0].set_result(None)

    def _drop(self, waiter: "asyncio.Future[None]") -> None:
        """A waiter cancelled in line: remove it; if it was first, serve the next."""
        line = self._line
        if not line:
            return
        first = line[0] is waiter
        try:
            line.remove(waiter)
        except ValueError:
            return
        if first:
            self._disarm()
            self._serve(None)


@dataclass(slots=True)
class _Device:
    pace: Pace
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    strikes: int = 0


class GatePacing(Protocol):
    """The pacing a gate follows (``PacingSettings.effective()`` in a run)."""

    per_host_rate_per_s: float
    strikes_before_back_off: int
    probe_timeout_s: float
    probes_in_flight: int


class DeviceGate:
    """The run's devices in the probe phase: pace, turn and strikes per address.

    ``clock`` must be the event loop's clock (``time.monotonic``), the clock the sweep stamps
    ``next_contact_at`` with.
    """

    def __init__(
        self,
        *,
        per_host_rate_per_s: float,
        strikes_before_back_off: int = DEFAULT_STRIKES_BEFORE_BACK_OFF,
        probe_timeout_s: float = 5.0,
        probes_in_flight: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if strikes_before_back_off < 1:
            raise ValueError("strikes_before_back_off must be at least 1")
        self._rate = per_host_rate_per_s
        self._limit = strikes_before_back_off
        self._clock = clock
        self._devices: dict[str, _Device] = {}
        #: address -> why it was backed off, for the run's report (kept after release).
        self.backed_off: dict[str, str] = {}
        #: how long the run's devices take to answer now, and the probe timeout that follows.
        self.answer_times = AnswerTimes(probe_timeout_s, probes_in_flight)

    @classmethod
    def paced(cls, pacing: GatePacing) -> "DeviceGate":
        """The gate of a run paced by ``pacing``: the embedded pipeline's and a sensor's alike."""
        return cls(
            per_host_rate_per_s=pacing.per_host_rate_per_s,
            strikes_before_back_off=pacing.strikes_before_back_off,
            probe_timeout_s=pacing.probe_timeout_s,
            probes_in_flight=pacing.probes_in_flight,
        )

    @property
    def in_flight(self) -> int:
        """Devices whose state is held now (memory follows this, not the range)."""
        return len(self._devices)

    def admit(self, address: str, *, not_before: float = 0.0) -> None:
        """Start the probe phase of ``address``, its pace resuming where the sweep left it."""
        device = self._devices.get(address)
        if device is None:
            self._devices[address] = _Device(Pace(self._rate, resume_at=not_before))

    def release(self, address: str) -> None:
        """The host is done: drop its state (its back-off reason, if any, stays)."""
        self._devices.pop(address, None)

    def _device(self, address: str) -> _Device:
        device = self._devices.get(address)
        if device is None:  # a caller that did not admit it: pace from now on
            device = self._devices[address] = _Device(Pace(self._rate))
        return device

    def contact_now(self, address: str) -> bool:
        """Book one contact if the pace allows it now and nobody waits before it; else False
        (then ``contact`` waits in line). Spares a session the coroutines of a wait it does
        not have: in the lab profile almost every contact conforms at once."""
        pace = self._device(address).pace
        now = self._clock()
        if not pace.ready(now):
            return False
        pace.take(now)
        return True

    async def contact(self, address: str) -> None:
        """Wait until the device's pace allows one more connect or datagram session, book it."""
        pace = self._device(address).pace
        # In line behind the host's other sessions: one wake-up per contact, not one per
        # waiting session per contact (a host's 8 UDP sessions wait together).
        now = await pace.hold(self._clock)
        pace.take(now)

    @asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        """The device's one conversation at a time: hold it for a whole probe."""
        device = self._device(address)
        async with device.turn:
            yield

    def strike(self, address: str, reason: str) -> bool:
        """Book one misbehaviour; ``True`` when this one backs the device off (said once)."""
        if address in self.backed_off:
            return False
        device = self._device(address)
        device.strikes += 1
        if device.strikes < self._limit:
            return False
        self.backed_off[address] = f"{device.strikes} strikes, last: {reason}"
        return True

    def clear(self, address: str) -> None:
        """The device answered well: its streak of strikes starts again."""
        device = self._devices.get(address)
        if device is not None:
            device.strikes = 0

    def backed_off_reason(self, address: str) -> str | None:
        return self.backed_off.get(address)
