"""From the sweep to the probes: each answering host is identified as soon as its sweep ends.

Hosts wait for one of ``probes_in_flight`` identification slots *untimed*: a probe's timeouts
start when it starts talking to the device, so a busy machine or a long queue behind the sweep
never turns into "no answer" (issue: the lab profile lost most identities on a loaded machine
when every swept host started its probes at once). While a host is identified its entry in the
run's :class:`~cybermission.device_pacing.DeviceGate` carries the per-host pace on from the
sweep (``HostResult.next_contact_at``), and is dropped when it is done, so state follows the
hosts in flight, never the size of the range.

A host's UDP probes hold no connection on the device and may wait out a silence (the usual answer
of an address on a UDP port where the network drops ICMP; on loopback every "port unreachable"
arrives, 4,000 of 4,000 measured, and ends its session at once). Holding an identification slot
through that wait made the probe phase one UDP timeout per ``probes_in_flight`` hosts (issue 12: a
1,024-device lab run waited in epoll 76% of its time). So a host hands its slot over when its TCP
probes are done: it takes one of ``udp_hosts`` datagram slots (the run's sessions in flight,
``sockets_in_flight``, shared out over its UDP ports) and only then frees its identification slot,
so at most ``probes_in_flight + udp_hosts`` hosts are in the probe phase at once.

Backpressure runs the whole way: ``identify`` awaits the bounded write queue, a full set of
slots stops this loop from pulling the next swept host, and the sweep's own bounded queue then
stops its workers.

:func:`probe_hosts` is the probing side of a scan without a store, the one composition of sweep
and identification that the embedded pipeline, its probe processes and a site sensor all run.
"""

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing

from cybermission.config import PacingSettings
from cybermission.device_pacing import DeviceGate
from cybermission.guard import ScopeGuard
from cybermission.net import Connector
from cybermission.scans.probing import HostReport, ProbePlan, identify_host, retried
from cybermission.scans.sweep import HostResult

logger = logging.getLogger(__name__)

#: What ``identify`` calls between a host's TCP and UDP probes (``identify_host``'s ``handoff``).
Handoff = Callable[[], Awaitable[None]]


def udp_window(pacing: PacingSettings, udp_ports: int) -> int:
    """Hosts whose UDP probes may wait at once: the sessions in flight over the UDP ports, never
    fewer than the identification window (what one window held before the handoff)."""
    return max(pacing.probes_in_flight, pacing.sockets_in_flight // max(1, udp_ports))


def wants_probes(host: HostResult, plan: ProbePlan) -> bool:
    """Whether a swept host is identified: not refused by the scope, and a TCP port open or UDP
    probes to run (a UDP-only device answers no connect)."""
    return not host.scope_refused and (bool(host.open_ports) or plan.has_udp)


async def probe_hosts(
    swept: AsyncIterator[HostResult],
    *,
    plan: ProbePlan,
    guard: ScopeGuard,
    pacing: PacingSettings,
) -> AsyncGenerator[HostResult | HostReport, None]:
    """Every host of ``swept`` as it comes (for the caller's counts and errors), then the report
    of each one :func:`wants_probes`, as its identification ends.

    A host whose TCP identification went unanswered (a timeout, an identity cut short) is asked
    once more when every other host is done, unless it was backed off or ``pacing`` says not
    to (``retry_unanswered``): on a busy machine a stall of this process or of the device's
    shared host, not the device, timed most of them out (issue 12: windows of 64 to 128 hosts
    lost at once). The retry goes through the same gate, guard and manifests (its requests count
    with the first attempt's), and its report is given then.

    The caller's pace is the backpressure: a consumer that stops pulling stops the probes
    starting (the output holds at most ``probes_in_flight`` items); closing the iterator
    cancels what is in flight and closes the run's sockets.
    """
    out: asyncio.Queue[HostResult | HostReport | BaseException | None] = asyncio.Queue(
        maxsize=pacing.probes_in_flight
    )
    gate = DeviceGate.paced(pacing)
    connector = Connector(guard, pacer=gate, shared_udp=True)
    unanswered: dict[str, HostReport] = {}

    async def identify(host: HostResult, handoff: Handoff) -> None:
        report = await identify_host(
            host,
            plan=plan,
            connector=connector,
            gate=gate,
            timeout_s=pacing.probe_timeout_s,
            handoff=handoff,
        )
        if (
            pacing.retry_unanswered
            and report.unanswered_ports
            and gate.backed_off_reason(host.address) is None
        ):
            unanswered[host.address] = report
        else:
            await out.put(report)

    async def again(host: HostResult, handoff: Handoff) -> None:
        first = unanswered[host.address]
        second = await identify_host(
            host,
            plan=ProbePlan(tcp=plan.tcp, udp={}, options=plan.options),
            connector=connector,
            gate=gate,
            timeout_s=pacing.probe_timeout_s,
            prior=first.sent,
        )
        logger.info(
            "identification retried",
            extra={
                "address": host.address,
                "ports": list(host.open_ports),
                "answered": not second.unanswered_ports,
            },
        )
        await out.put(retried(first, second))

    async def to_retry() -> AsyncGenerator[HostResult, None]:
        for address, report in list(unanswered.items()):
            ports = tuple(sorted(report.unanswered_ports))
            yield HostResult(address=address, open_ports=ports, closed=0, filtered=0, errors=())

    async def wanted() -> AsyncGenerator[HostResult, None]:
        async for host in swept:
            await out.put(host)
            if wants_probes(host, plan):
                yield host

    async def produce() -> None:
        end: Exception | None = None
        try:
            async with aclosing(wanted()) as live:
                await identify_paced(
                    live, identify, gate=gate, udp_hosts=udp_window(pacing, len(plan.udp))
                )
            if unanswered:
                async with aclosing(to_retry()) as hosts:
                    await identify_paced(hosts, again, gate=gate)
        except Exception as exc:  # noqa: BLE001 (raised by the consumer, in its own task)
            end = exc
        finally:
            connector.close()
        await out.put(end)

    producer = asyncio.create_task(produce())
    try:
        while (item := await out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not producer.done():
            producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)


async def identify_paced(
    hosts: AsyncIterator[HostResult],
    identify: Callable[[HostResult, Handoff], Awaitable[None]],
    *,
    gate: DeviceGate,
    udp_hosts: int | None = None,
) -> None:
    """Run ``identify`` on every host of ``hosts``, as many at once as the gate's window allows.

    The window (``gate.answer_times.window``, at most ``probes_in_flight``) narrows when probes
    go unanswered and widens with answers. ``identify`` awaits the handoff it is given before
    its UDP probes: the host then holds one of ``udp_hosts`` datagram slots (default: the
    window's maximum) instead of its identification slot. The first error of an ``identify``
    cancels the others and is raised here.
    """
    slots = _Window(lambda: gate.answer_times.window)
    datagram_slots = _Window(lambda: udp_hosts or gate.answer_times.max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    failure: list[BaseException] = []

    async def one(host: HostResult) -> None:
        held = [slots]

        async def handoff() -> None:
            if held != [slots]:
                return  # handed over already
            await datagram_slots.acquire()
            held.append(datagram_slots)
            held.remove(slots)
            slots.release()

        try:
            await identify(host, handoff)
        finally:
            gate.release(host.address)
            for window in held:
                window.release()

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None and not failure:
            failure.append(exc)

    try:
        async for host in hosts:
            await slots.acquire()
            if failure:
                slots.release()
                break
            gate.admit(host.address, not_before=host.next_contact_at)
            task = asyncio.create_task(one(host))
            tasks.add(task)
            task.add_done_callback(done)
        if tasks:
            await asyncio.wait(set(tasks), return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    if failure:
        raise failure[0]


class _Window:
    """A counting limit whose size is read at every acquire (it may shrink or grow meanwhile).

    Waiters queue in arrival order and a release wakes only those it makes room for: with one
    event for all, every release woke every host waiting for a datagram slot (64 in a safe run),
    and all but one went back to wait (issue 12).
    """

    def __init__(self, size: Callable[[], int]) -> None:
        self._size = size
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if not self._waiters and self._held < self._size():
            self._held += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is counted for us when we are woken
        except asyncio.CancelledError:
            if waiter.cancelled():
                if waiter in self._waiters:  # a release may have passed over it already
                    self._waiters.remove(waiter)
            else:  # woken, then cancelled before running: hand the slot on
                self.release()
            raise

    def release(self) -> None:
        self._held -= 1
        waiters = self._waiters
        while waiters and self._held < self._size():
            waiter = waiters.popleft()
            if not waiter.done():
                self._held += 1
                waiter.set_result(None)
