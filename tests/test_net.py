"""Tests for the connector's UDP session: one socket, guard per datagram, filtered, bounded."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

import pytest

from cybermission.errors import ProbeTimeoutError, ScopeError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import MAX_QUEUED_DATAGRAMS, Connector, UdpSession
from tests.timing import scaled

# Address plan: this module binds 127.64.0.0/24 only.
SERVER = "127.64.0.11"
OTHER = "127.64.0.12"
OUT_OF_SCOPE = "127.64.1.1"


@dataclass
class _Echo(asyncio.DatagramProtocol):
    """A UDP server that records each datagram's source and answers ``reply(payload)``."""

    answer: bool = True
    received: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = (str(addr[0]), int(addr[1]))
        self.received.append((data, source))
        if self.answer and self.transport is not None:
            self.transport.sendto(b"re:" + data, source)


@asynccontextmanager
async def _serve(address: str, *, answer: bool = True) -> AsyncIterator[tuple[_Echo, int]]:
    loop = asyncio.get_running_loop()
    echo = _Echo(answer=answer)
    transport, _ = await loop.create_datagram_endpoint(lambda: echo, local_addr=(address, 0))
    try:
        yield echo, int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()
        # The loop closes the socket on its next turn: a port that must be free is free after.
        await asyncio.sleep(0)


@pytest.fixture
async def echo() -> AsyncIterator[tuple[_Echo, int]]:
    async with _serve(SERVER) as served:
        yield served


class _CountingGuard:
    """The real scope guard, counting its checks and refusing everything once ``closed``."""

    def __init__(self) -> None:
        self.inner = ScopeGuard([ScopeRule.build("net", ["127.64.0.0/24"])])
        self.checks = 0
        self.closed = False

    def check(self, address: str) -> object:
        self.checks += 1
        if self.closed:
            raise ScopeError(address, "scope withdrawn")
        return self.inner.check(address)


@pytest.fixture(params=["own-socket", "shared-socket"])
async def connector(request: pytest.FixtureRequest) -> AsyncIterator[Connector]:
    """Both ways a session gets a socket: its own, or the run's shared one (shared_udp.py)."""
    made = Connector(
        ScopeGuard([ScopeRule.build("net", ["127.64.0.0/24"])]),
        shared_udp=request.param == "shared-socket",
    )
    yield made
    made.close()


async def test_open_udp_sends_every_datagram_from_one_source_port(
    connector: Connector, echo: tuple[_Echo, int]
) -> None:
    server, port = echo
    async with connector.open_udp(SERVER, port) as session:
        answers = []
        for payload in (b"one", b"two", b"three"):
            session.send(payload)
            answers.append(await session.receive(timeout_s=scaled(2)))
        local = session.local_address
    assert answers == [b"re:one", b"re:two", b"re:three"]
    assert [data for data, _ in server.received] == [b"one", b"two", b"three"]
    # One source port; the shared socket is unbound to an address (0.0.0.0: routing picks it).
    assert {source[1] for _, source in server.received} == {local[1]}
    assert local[0] in {"0.0.0.0", server.received[0][1][0]}


async def test_open_udp_asks_the_guard_before_every_datagram(echo: tuple[_Echo, int]) -> None:
    server, port = echo
    guard = _CountingGuard()
    connector = Connector(guard)
    async with connector.open_udp(SERVER, port) as session:
        session.send(b"one")
        await session.receive(timeout_s=scaled(2))
        session.send(b"two")
        await session.receive(timeout_s=scaled(2))
        assert guard.checks == 3  # the open and each datagram
        guard.closed = True
        with pytest.raises(ScopeError):
            session.send(b"three")
    assert [data for data, _ in server.received] == [b"one", b"two"]


class _RecordingPacer:
    """A pacer that says whether a contact conforms now, recording what the connector asked."""

    def __init__(self, guard: _CountingGuard, *, conforming: bool) -> None:
        self.guard = guard
        self.conforming = conforming
        self.calls: list[tuple[str, int]] = []  # (what, guard checks so far)

    def contact_now(self, address: str) -> bool:
        self.calls.append(("now", self.guard.checks))
        return self.conforming

    async def contact(self, address: str) -> None:
        self.calls.append(("wait", self.guard.checks))


@pytest.mark.parametrize("conforming", [True, False], ids=["conforming", "waits"])
async def test_udp_sessions_are_paced_before_the_guard_judges(
    echo: tuple[_Echo, int], conforming: bool
) -> None:
    """Each session books its contact first (waiting only when the pace does not conform now),
    then the guard judges the address: the check stays right before the packet."""
    _, port = echo
    guard = _CountingGuard()
    pacer = _RecordingPacer(guard, conforming=conforming)
    connector = Connector(guard, pacer=pacer, shared_udp=True)
    try:
        assert await connector.exchange_udp(SERVER, port, b"a", timeout_s=scaled(2)) == b"re:a"
        async with connector.open_udp(SERVER, port) as session:
            session.send(b"b")
            assert await session.receive(timeout_s=scaled(2)) == b"re:b"
    finally:
        connector.close()
    per_session = [("now", 0)] if conforming else [("now", 0), ("wait", 0)]
    assert pacer.calls[: len(per_session)] == per_session
    assert [what for what, _ in pacer.calls] == [what for what, _ in per_session] * 2
    assert guard.checks == 4  # each session's open and its one datagram


async def test_open_udp_gives_its_share_of_the_socket_back_when_its_body_raises(
    echo: tuple[_Echo, int],
) -> None:
    _, port = echo
    connector = Connector(ScopeGuard([ScopeRule.build("net", ["127.64.0.0/24"])]), shared_udp=True)
    shared_ports: list[int] = []

    async def failing_probe() -> None:
        async with connector.open_udp(SERVER, port) as first:
            shared_ports.append(first.local_address[1])
            raise RuntimeError("the probe failed")

    try:
        with pytest.raises(RuntimeError):
            await failing_probe()
        # The address and port are free on the shared socket again: no socket of its own.
        async with connector.open_udp(SERVER, port) as second:
            assert [second.local_address[1]] == shared_ports
            second.send(b"again")
            assert await second.receive(timeout_s=scaled(2)) == b"re:again"
    finally:
        connector.close()


async def test_open_udp_refuses_an_out_of_scope_address_before_a_socket(
    connector: Connector,
) -> None:
    with pytest.raises(ScopeError):
        async with connector.open_udp(OUT_OF_SCOPE, 5683):
            pass


async def test_udp_session_ignores_answers_from_another_address(connector: Connector) -> None:
    async with (
        _serve(SERVER, answer=False) as (server, port),
        _serve(OTHER, answer=False) as (stranger, _),
        connector.open_udp(SERVER, port, follow_port=True) as session,
    ):
        session.send(b"hello")
        await asyncio.sleep(0.05)
        assert stranger.transport is not None
        stranger.transport.sendto(b"spoofed", server.received[-1][1])
        with pytest.raises(ProbeTimeoutError):
            await session.receive(timeout_s=0.2)


async def test_udp_session_ignores_another_port_unless_following(connector: Connector) -> None:
    async with (
        _serve(SERVER, answer=False) as (server, port),
        _serve(SERVER, answer=False) as (moved, _),
    ):
        assert moved.transport is not None
        async with connector.open_udp(SERVER, port) as fixed:
            fixed.send(b"a")
            await asyncio.sleep(0.05)
            moved.transport.sendto(b"from another port", server.received[-1][1])
            with pytest.raises(ProbeTimeoutError):
                await fixed.receive(timeout_s=0.2)
        async with connector.open_udp(SERVER, port, follow_port=True) as following:
            following.send(b"a")
            await asyncio.sleep(0.05)
            moved.transport.sendto(b"from another port", server.received[-1][1])
            assert await following.receive(timeout_s=scaled(2)) == b"from another port"
            following.send(b"b")
            await asyncio.sleep(0.05)
    assert [data for data, _ in moved.received] == [b"b"]
    assert [data for data, _ in server.received] == [b"a", b"a"]


async def _drain(session: UdpSession) -> list[bytes]:
    kept: list[bytes] = []
    while True:
        try:
            kept.append(await session.receive(timeout_s=0.2))
        except ProbeTimeoutError:
            return kept


async def test_udp_session_bounds_answers_in_size_and_number(connector: Connector) -> None:
    async with (
        _serve(SERVER, answer=False) as (server, port),
        connector.open_udp(SERVER, port, max_datagram_bytes=8) as session,
    ):
        session.send(b"x")
        await asyncio.sleep(0.05)
        assert server.transport is not None
        for index in range(MAX_QUEUED_DATAGRAMS + 8):
            server.transport.sendto(b"%02d" % index + b"-" * 30, session.local_address)
        await asyncio.sleep(0.1)
        kept = await _drain(session)
    assert len(kept) == MAX_QUEUED_DATAGRAMS
    assert kept[0] == b"00------"


@pytest.mark.parametrize("follow_port", [False, True], ids=["fixed-port", "following"])
async def test_udp_session_raises_port_unreachable(connector: Connector, follow_port: bool) -> None:
    """A session following the port (HART-IP) hears "nothing here" too: without it, every such
    probe of an empty address waited out its whole timeout (issue 12)."""
    async with _serve(SERVER, answer=False) as (_, port):
        pass  # the port is free again: nothing listens there
    async with connector.open_udp(SERVER, port, follow_port=follow_port) as session:
        session.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            await session.receive(timeout_s=scaled(30))


async def test_exchange_udp_answers_one_datagram_each(
    connector: Connector, echo: tuple[_Echo, int], request: pytest.FixtureRequest
) -> None:
    server, port = echo
    assert await connector.exchange_udp(SERVER, port, b"a", timeout_s=scaled(2)) == b"re:a"
    assert await connector.exchange_udp(SERVER, port, b"b", timeout_s=scaled(2)) == b"re:b"
    # A new socket per exchange, or the run's one shared socket for every exchange.
    sources = 1 if "shared-socket" in request.node.callspec.id else 2
    assert len({source for _, source in server.received}) == sources


async def test_port_following_sessions_of_a_run_reuse_an_idle_socket_address_by_address() -> None:
    """A run's HART-IP sessions take an idle socket of an ended session (issue 12: making one
    per address was a quarter of the UDP cost); what the socket's last address sends late never
    reaches the next session, and "port unreachable" still does."""
    connector = Connector(ScopeGuard([ScopeRule.build("net", ["127.64.0.0/24"])]), shared_udp=True)
    try:
        async with _serve(SERVER) as (server, port), _serve(OTHER) as (_, other_port):
            async with connector.open_udp(SERVER, port, follow_port=True) as first:
                first.send(b"one")
                assert await first.receive(timeout_s=scaled(2)) == b"re:one"
                source = first.local_address[1]
            with pytest.raises(RuntimeError):
                first.send(b"after the end")  # its socket may serve another address now
            async with connector.open_udp(OTHER, other_port, follow_port=True) as second:
                assert second.local_address[1] == source
                assert server.transport is not None
                server.transport.sendto(b"late", server.received[-1][1])
                second.send(b"two")
                assert await second.receive(timeout_s=scaled(2)) == b"re:two"
            async with _serve(SERVER, answer=False) as (_, closed_port):
                pass  # free again: nothing listens there
            async with connector.open_udp(SERVER, closed_port, follow_port=True) as third:
                assert third.local_address[1] == source
                third.send(b"anyone?")
                with pytest.raises(ConnectionRefusedError):
                    await third.receive(timeout_s=scaled(30))
        assert [data for data, _ in server.received] == [b"one"]
    finally:
        connector.close()


async def test_shared_socket_gives_each_session_its_answers_and_its_errors() -> None:
    connector = Connector(ScopeGuard([ScopeRule.build("net", ["127.64.0.0/24"])]), shared_udp=True)
    try:
        async with _serve(OTHER, answer=False) as (_, closed_port):
            pass  # free again: datagrams to it draw ICMP port unreachable
        async with (
            _serve(SERVER) as (_, port),
            connector.open_udp(OTHER, closed_port) as refused,
            connector.open_udp(SERVER, port) as answered,
        ):
            refused.send(b"anyone?")
            answered.send(b"one")
            refused.send(b"anyone?")  # reported to the sender, never to the other session
            answered.send(b"two")
            assert await answered.receive(timeout_s=scaled(2)) == b"re:one"
            assert await answered.receive(timeout_s=scaled(2)) == b"re:two"
            with pytest.raises(ConnectionRefusedError):
                await refused.receive(timeout_s=scaled(2))
    finally:
        connector.close()
