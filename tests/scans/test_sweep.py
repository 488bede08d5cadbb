"""TCP connect sweep against real listeners on 127.10.x.y: results, scope at send time, pacing."""

import asyncio
import itertools
import resource
import select
import selectors
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from cybermission.config import PacingProfile, PacingSettings
from cybermission.errors import ValidationError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.scans.sweep import HostResult, sweep
from tests.timing import scaled

SCOPE = ScopeGuard([ScopeRule.build("discovery-tests", ["127.10.0.0/16", "::1/128"])])
FAST = PacingSettings(
    global_rate_per_s=100_000,
    per_host_rate_per_s=100_000,
    hosts_in_flight=64,
    sockets_in_flight=256,
    connect_timeout_s=scaled(0.5),
)


def _listen(address: str, port: int, *, backlog: int = 64) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(backlog)
    return sock


@dataclass
class RecordingListener:
    """Accepts on its sockets from a thread and records (port, monotonic time) of each accept."""

    sockets: list[socket.socket]
    accepted: list[tuple[int, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _accepted: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "RecordingListener":
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=scaled(5))
        for sock in self.sockets:
            sock.close()

    def wait_for(self, count: int, timeout_s: float = scaled(5.0)) -> None:
        """Block until ``count`` connections were accepted (the listener lags the scanner)."""
        with self._accepted:
            self._accepted.wait_for(lambda: len(self.accepted) >= count, timeout=timeout_s)

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            for sock in self.sockets:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.02):
                    server = key.fileobj
                    assert isinstance(server, socket.socket)
                    try:
                        conn, _peer = server.accept()
                    except OSError:
                        continue
                    with self._accepted:
                        self.accepted.append((server.getsockname()[1], time.monotonic()))
                        self._accepted.notify_all()
                    conn.close()


@dataclass
class RecordingGuard:
    """The real scope guard, with the time of every check (the scanner's send times)."""

    inner: ScopeGuard
    checks: list[tuple[str, float]] = field(default_factory=list)

    def check(self, address: str) -> object:
        self.checks.append((address, time.monotonic()))
        return self.inner.check(address)


@pytest.fixture
def black_hole() -> Iterator[tuple[str, int]]:
    """A port whose accept queue is full: the kernel drops new SYNs, so connects time out."""
    server = _listen("127.10.5.1", 15100, backlog=0)
    filler = socket.create_connection(("127.10.5.1", 15100), timeout=scaled(2))
    yield "127.10.5.1", 15100
    filler.close()
    server.close()


async def _collect(results: AsyncIterator[HostResult]) -> list[HostResult]:
    return [r async for r in results]


async def test_sweep_finds_exactly_the_open_ports() -> None:
    listeners = [
        _listen("127.10.1.1", 15020),
        _listen("127.10.1.1", 15021),
        _listen("127.10.1.3", 15022),
    ]
    try:
        hosts = ["127.10.1.1", "127.10.1.2", "127.10.1.3"]
        got = await _collect(sweep(hosts, [15020, 15021, 15022], guard=SCOPE, pacing=FAST))
    finally:
        for sock in listeners:
            sock.close()
    by_host = {r.address: r for r in got}
    assert set(by_host) == set(hosts)
    assert by_host["127.10.1.1"].open_ports == (15020, 15021)
    assert by_host["127.10.1.1"].closed == 1
    assert by_host["127.10.1.2"].open_ports == ()
    assert by_host["127.10.1.2"].closed == 3
    assert by_host["127.10.1.3"].open_ports == (15022,)
    assert all(r.errors == () and r.filtered == 0 for r in got)


async def test_sweep_ipv6_loopback() -> None:
    listener = _listen("::1", 0)
    port = listener.getsockname()[1]
    try:
        got = await _collect(sweep(["::1"], [port], guard=SCOPE, pacing=FAST))
    finally:
        listener.close()
    assert got == [HostResult("::1", (port,), 0, 0, ())]


async def test_sweep_refuses_out_of_scope_host_at_send_time() -> None:
    guard = ScopeGuard([ScopeRule.build("narrow", ["127.10.2.0/24"])])
    inside, outside = _listen("127.10.2.1", 15030), _listen("127.10.3.1", 15030)
    try:
        got = await _collect(sweep(["127.10.2.1", "127.10.3.1"], [15030], guard=guard, pacing=FAST))
        outside.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever connected to the refused host
            outside.accept()
    finally:
        inside.close()
        outside.close()
    by_host = {r.address: r for r in got}
    assert by_host["127.10.2.1"].open_ports == (15030,)
    refused = by_host["127.10.3.1"]
    assert refused.scope_refused
    assert refused.open_ports == ()
    assert "outside every authorised scope" in refused.errors[0]


async def test_sweep_closed_and_filtered_ports(black_hole: tuple[str, int]) -> None:
    address, hole = black_hole
    answering = _listen(address, 15101)
    try:
        got = await _collect(sweep([address], [15101, hole, 15102], guard=SCOPE, pacing=FAST))
    finally:
        answering.close()
    assert got == [HostResult(address, (15101,), closed=1, filtered=1, errors=())]


async def test_sweep_one_connection_at_a_time_to_an_answering_host(
    black_hole: tuple[str, int],
) -> None:
    # First port answers (the host is live); the second hangs until the connect timeout. If the
    # sweep ever had two attempts in flight to this host, the third port would be connected while
    # the second still hangs, i.e. well before one timeout after the first.
    address, hole = black_hole
    guard = RecordingGuard(SCOPE)
    with RecordingListener([_listen(address, 15103), _listen(address, 15104)]) as listener:
        got = await _collect(sweep([address], [15103, hole, 15104], guard=guard, pacing=FAST))
        await asyncio.to_thread(listener.wait_for, 2)
    assert got[0].open_ports == (15103, 15104)
    accepted = dict(listener.accepted)
    assert accepted[15104] - accepted[15103] >= FAST.connect_timeout_s * 0.8
    sends = [t for _, t in guard.checks]
    assert sends == sorted(sends)
    assert sends[2] - sends[1] >= FAST.connect_timeout_s


async def test_sweep_silent_host_tries_remaining_ports_together() -> None:
    # Every port hangs: after the first timeout the host is silent, and the others go at once
    # (their send times all fall before any of them could have timed out).
    holes = [_listen("127.10.6.1", port, backlog=0) for port in (15110, 15111, 15112, 15113)]
    fillers = [
        socket.create_connection(("127.10.6.1", p), timeout=scaled(2)) for p in range(15110, 15114)
    ]
    guard = RecordingGuard(SCOPE)
    try:
        got = await _collect(
            sweep(["127.10.6.1"], [15110, 15111, 15112, 15113], guard=guard, pacing=FAST)
        )
    finally:
        for sock in (*fillers, *holes):
            sock.close()
    assert got == [HostResult("127.10.6.1", (), closed=0, filtered=4, errors=())]
    first, *rest = [t for _, t in guard.checks]
    assert min(rest) - first >= FAST.connect_timeout_s
    assert max(rest) - min(rest) < FAST.connect_timeout_s


async def test_sweep_streams_a_slash_20_lazily() -> None:
    pulled = 0

    def hosts() -> Iterator[str]:
        nonlocal pulled
        for third in range(16, 32):
            for fourth in range(256):
                pulled += 1
                yield f"127.10.{third}.{fourth}"

    pulled_at_first_result: int | None = None
    count = 0
    async for result in sweep(hosts(), [15040], guard=SCOPE, pacing=FAST):
        if pulled_at_first_result is None:
            pulled_at_first_result = pulled
        assert result.closed == 1
        count += 1
    assert count == 4096
    assert pulled_at_first_result is not None
    # Workers pull a host only when free and results wait in a queue as long as the worker pool:
    # the first result arrives with most of the /20 still pending.
    assert pulled_at_first_result <= 2 * FAST.hosts_in_flight + 1


async def test_sweep_per_host_rate_spaces_connections() -> None:
    pacing = FAST.model_copy(update={"per_host_rate_per_s": 5.0})  # one connect per 200 ms
    ports = [15050, 15051, 15052, 15053]
    with RecordingListener([_listen("127.10.7.1", p) for p in ports]) as listener:
        got = await _collect(sweep(["127.10.7.1"], ports, guard=SCOPE, pacing=pacing))
        await asyncio.to_thread(listener.wait_for, len(ports))
    assert got[0].open_ports == tuple(ports)
    times = [t for _, t in sorted(listener.accepted, key=lambda a: a[1])]
    assert [p for p, _ in sorted(listener.accepted, key=lambda a: a[1])] == ports
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Accept times carry the listener thread's latency: allow a quarter of the interval.
    assert min(gaps) >= 0.2 * 0.75


async def test_sweep_global_rate_spaces_sends_across_hosts() -> None:
    pacing = FAST.model_copy(update={"global_rate_per_s": 20.0})  # one send per 50 ms, burst 1
    guard = RecordingGuard(SCOPE)
    hosts = [f"127.10.8.{i}" for i in range(1, 6)]
    await _collect(sweep(hosts, [15060], guard=guard, pacing=pacing))
    sends = sorted(t for _, t in guard.checks)
    assert len(sends) == 5
    # A margin for the process being preempted between booking a send and the guard check.
    assert min(b - a for a, b in itertools.pairwise(sends)) >= 0.05 * 0.9


async def test_sweep_records_socket_errors_and_goes_on() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def hosts() -> Iterator[str]:
        yield "127.10.9.1"
        # The loop and its selector exist by now. No new descriptor can be opened below 3, so
        # every socket() for the next hosts fails with EMFILE.
        resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))
        yield "127.10.9.2"
        yield "127.10.9.3"

    pacing = FAST.model_copy(update={"hosts_in_flight": 1})
    try:
        got = await _collect(sweep(hosts(), [15070, 15071], guard=SCOPE, pacing=pacing))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [r.address for r in got] == ["127.10.9.1", "127.10.9.2", "127.10.9.3"]
    assert got[0] == HostResult("127.10.9.1", (), closed=2, filtered=0, errors=())
    for result in got[1:]:
        assert (result.closed, result.filtered) == (0, 0)
        assert [e.split(":")[:2] for e in result.errors] == [
            ["15070", " EMFILE"],
            ["15071", " EMFILE"],
        ]


async def test_sweep_early_exit_cancels_workers(black_hole: tuple[str, int]) -> None:
    address, hole = black_hole
    pulled = 0

    def hosts() -> Iterator[str]:
        nonlocal pulled
        pulled += 1
        yield address  # its worker hangs on the black hole when the consumer leaves
        for i in range(1, 250):
            pulled += 1
            yield f"127.10.10.{i}"

    pacing = FAST.model_copy(update={"hosts_in_flight": 4})
    results = sweep(hosts(), [hole, 15080], guard=SCOPE, pacing=pacing)
    first = await results.__anext__()
    await results.aclose()
    assert first.address != address
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []
    assert pulled < 50


async def test_sweep_refuses_bad_ports() -> None:
    with pytest.raises(ValidationError, match="70000"):
        await _collect(sweep(["127.10.1.1"], [502, 70000], guard=SCOPE, pacing=FAST))


async def test_sweep_lab_profile_lifts_limits() -> None:
    got = await _collect(
        sweep(
            [f"127.10.11.{i}" for i in range(1, 51)],
            [15090, 15091],
            guard=SCOPE,
            pacing=PacingSettings(profile=PacingProfile.LAB),
        )
    )
    assert len(got) == 50
    assert all(r.closed == 2 for r in got)


@dataclass
class RevokedAfter:
    """The real guard, its scope revoked (replaced by an expired one) after ``allowed`` checks."""

    allowed: int
    checks: int = 0

    def check(self, address: str) -> object:
        self.checks += 1
        if self.checks <= self.allowed:
            return SCOPE.check(address)
        expired = ScopeRule.build(
            "discovery-tests", ["127.10.0.0/16"], valid_until=datetime.now(UTC)
        )
        return ScopeGuard([expired]).check(address)


async def test_sweep_scope_revoked_mid_host_stops_that_host() -> None:
    guard = RevokedAfter(allowed=2)
    got = await _collect(
        sweep(["127.10.12.1"], [15120, 15121, 15122, 15123], guard=guard, pacing=FAST)
    )
    assert got[0].closed == 2  # the two probes sent before the revocation
    assert got[0].scope_refused
    assert "no authorised scope is valid now" in got[0].errors[0]
    assert guard.checks == 3  # nothing more was tried on that host after the refusal


async def test_completions_settle_reads_every_completion_the_kernel_holds() -> None:
    """More connects completed than one epoll_wait returns (1,023 by Python's default): a late
    loop's deadline sweep settles them all before it calls any unanswered."""
    from cybermission.scans.sweep import _Completions

    count = 2_500
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.10.13.1", 0))
    server.listen(4096)
    clients: list[socket.socket] = []
    completions = _Completions(asyncio.get_running_loop())
    try:
        futures = []
        for _ in range(count):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            clients.append(client)
            client.setblocking(False)
            client.connect_ex(server.getsockname())
            futures.append(completions.watch(client.fileno()))
        # Loopback completes the handshakes in the kernel; give them a moment without the loop.
        last = select.poll()
        last.register(clients[-1].fileno(), select.POLLOUT)
        assert last.poll(scaled(5) * 1000)
        completions.settle()  # called once, as the deadline sweep does
        assert sum(f.done() for f in futures) == count
    finally:
        completions.close()
        for client in clients:
            client.close()
        server.close()


async def test_sweep_keeps_no_answered_connect_waiting_for_its_deadline() -> None:
    """Deadline buckets hold only connects still unanswered. A busy loop is late at every tick,
    which pushes every deadline back, so buckets that kept answered connects until their
    deadline grew with the range (issue 12: a /16's memory 1.11 x a /20's). The timeout here
    is long enough that no bucket expires during the sweep, as on that busy loop."""
    from cybermission.scans.sweep import _Sweep

    slow = FAST.model_copy(update={"connect_timeout_s": scaled(600.0)})
    engine = _Sweep(SCOPE, (15041,), slow)
    hosts = (f"127.10.{third}.{fourth}" for third in range(40, 42) for fourth in range(256))
    got = await _collect(engine.run(hosts))
    assert len(got) == 512
    assert all(r.closed == 1 for r in got)  # every connect answered (RST)
    waiting = sum(len(bucket) for _deadline, bucket in engine._deadlines._buckets)
    assert waiting == 0
