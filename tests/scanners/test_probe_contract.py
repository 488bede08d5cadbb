"""The safety contract every registered probe keeps, run against generic misfit devices.

For each probe of ``load_probes()``: a silent device gives ``ProbeTimeoutError``, a garbage device
``ProbeProtocolError``, a device that closes at once ``None`` (UDP: a port nothing listens on), an
out-of-scope target ``ScopeError`` with nothing sent, and a ledger whose manifest lacks the first
request ``ManifestViolationError`` with nothing sent. Where a probe documents another outcome it
stands in ``DIFFERS`` with its reason; protocol-specific behaviour (retransmissions, what was
spent) stays in each ``test_<protocol>.py``.

Address plan: 127.27.0.0/16, one address per (case, probe): 127.27.<case>.<probe index + 1>.
"""

import asyncio
import contextlib
import functools
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

import pytest

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError, ScopeError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import (
    JSONValue,
    Manifest,
    ManifestViolationError,
    Observation,
    Probe,
    ProbeTarget,
    RequestLedger,
    Transport,
    load_probes,
)
from tests.timing import scaled

CONTRACT_SCOPE = "127.27.0.0/16"
ELSEWHERE = "127.27.250.0/24"  # the out-of-scope guard allows only this
TIMEOUT_S = scaled(2.0)
SILENT_TIMEOUT_S = 0.3
HANG_LIMIT_S = 10.0  # a hang fails the test instead of blocking the suite


class Case(StrEnum):
    SILENT = "silent"  # accepts (or reads datagrams), never answers
    GARBAGE = "garbage"  # greets with random bytes and answers every chunk with more
    CLOSING = "closing"  # TCP: accepts and closes; UDP: nothing listens (ICMP port unreachable)
    OUT_OF_SCOPE = "out-of-scope"  # the guard excludes the address
    LEDGER = "ledger"  # the manifest allows nothing


class Outcome(StrEnum):
    TIMEOUT = "ProbeTimeoutError"
    PROTOCOL_ERROR = "ProbeProtocolError"
    NONE = "None"
    OBSERVATION = "Observation"
    SCOPE = "ScopeError"
    MANIFEST = "ManifestViolationError"


CASE_OCTET = {
    Case.SILENT: 1,
    Case.GARBAGE: 2,
    Case.CLOSING: 3,
    Case.OUT_OF_SCOPE: 4,
    Case.LEDGER: 5,
}

CONTRACT = {
    Case.SILENT: Outcome.TIMEOUT,
    Case.GARBAGE: Outcome.PROTOCOL_ERROR,
    Case.CLOSING: Outcome.NONE,
    Case.OUT_OF_SCOPE: Outcome.SCOPE,
    Case.LEDGER: Outcome.MANIFEST,
}


@dataclass(frozen=True, slots=True)
class Differs:
    """A documented exception to the contract for one (probe, case)."""

    outcome: Outcome
    reason: str
    # Whether the device may receive bytes in this case (the ledger and scope cases send none).
    bytes_sent: bool = False


_UNREACHABLE_IS_TIMEOUT = "maps ICMP port unreachable to ProbeTimeoutError (nothing listens)"
_WAITS_FOR_GREETING = "the server speaks first: it waits for a greeting, sends nothing"
_UNFINISHED_LINE = "reads up to a line end; 64 random bytes without one are an unfinished answer"

DIFFERS: dict[tuple[str, Case], Differs] = {
    # Garbage: "not this protocol" is None where the port is shared or the answer is foreign.
    ("fox", Case.GARBAGE): Differs(
        Outcome.NONE, "an answer that is no fox hello is another protocol"
    ),
    ("mms", Case.GARBAGE): Differs(Outcome.NONE, "not COTP: port 102 is S7's, which runs next"),
    ("s7", Case.GARBAGE): Differs(Outcome.NONE, "not COTP: port 102 may be someone else's (MMS)"),
    ("telnet", Case.GARBAGE): Differs(Outcome.OBSERVATION, "any text is a banner, cleaned"),
    ("ftp", Case.GARBAGE): Differs(Outcome.TIMEOUT, _UNFINISHED_LINE),
    ("ssh", Case.GARBAGE): Differs(Outcome.TIMEOUT, _UNFINISHED_LINE),
    ("http", Case.GARBAGE): Differs(Outcome.TIMEOUT, "reads up to the blank line ending the head"),
    # UDP "closing": nothing listens on the port.
    ("bacnet", Case.CLOSING): Differs(Outcome.TIMEOUT, _UNREACHABLE_IS_TIMEOUT),
    ("coap", Case.CLOSING): Differs(Outcome.TIMEOUT, _UNREACHABLE_IS_TIMEOUT),
    ("knx", Case.CLOSING): Differs(Outcome.TIMEOUT, _UNREACHABLE_IS_TIMEOUT),
    ("snmp", Case.CLOSING): Differs(Outcome.TIMEOUT, _UNREACHABLE_IS_TIMEOUT),
    # Ledger: the first ledgered request comes after the device has spoken, or after TLS.
    ("ftp", Case.LEDGER): Differs(Outcome.TIMEOUT, _WAITS_FOR_GREETING),
    ("ssh", Case.LEDGER): Differs(Outcome.TIMEOUT, "sends nothing at all (manifest: none)"),
    ("telnet", Case.LEDGER): Differs(Outcome.TIMEOUT, _WAITS_FOR_GREETING),
    ("fox-tls", Case.LEDGER): Differs(
        Outcome.TIMEOUT, "the TLS ClientHello precedes the ledgered hello", bytes_sent=True
    ),
}

# Probes that break the contract today: reported, kept as strict expected failures so a fix shows.
VIOLATIONS: dict[tuple[str, Case], str] = {}

# Options that keep a probe's misfit runs short without changing what it does.
OPTIONS: dict[str, dict[str, JSONValue]] = {
    # Eight outstation addresses each wait dnp3_link_wait_s (default 0.5 s) on a silent device.
    "dnp3": {"dnp3_link_wait_s": 0.15, "dnp3_addresses": [1]},
    "dnp3-attributes": {"dnp3_link_wait_s": 0.15, "dnp3_addresses": [1]},
    # Sixteen units each wait the timeout on a silent gateway; two still make a walk.
    "modbus-units": {"unit_ids": [1, 2]},
}


@functools.cache
def probe_names() -> tuple[str, ...]:
    """Every registered probe, loaded once per test session (collection needs the names)."""
    return tuple(sorted(load_probes()))


def expected(probe: str, case: Case) -> Outcome:
    differs = DIFFERS.get((probe, case))
    return differs.outcome if differs is not None else CONTRACT[case]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "probe_name" not in metafunc.fixturenames:
        return
    case = CASE_OF_TEST[metafunc.function.__name__]
    params = [
        pytest.param(
            name,
            id=name,
            marks=[
                pytest.mark.xfail(
                    reason=VIOLATIONS[(name, case)], raises=AssertionError, strict=True
                )
            ]
            if (name, case) in VIOLATIONS
            else [],
        )
        for name in probe_names()
    ]
    metafunc.parametrize("probe_name", params)


@dataclass(eq=False)
class Misfit:
    """A TCP listener or UDP socket that misbehaves in one way, counting what reached it."""

    case: Case
    transport: Transport
    address: str
    port: int
    seed: str
    connections: int = 0
    datagrams: int = 0
    bytes_received: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _udp: asyncio.DatagramTransport | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def garbage(self, rng: random.Random) -> bytes:
        # 0xA5 first: never a DNP3 start (0x05 0x64), IEC 104 start (0x68), TPKT (0x03) or UA type.
        return b"\xa5" + rng.randbytes(63)

    async def start(self) -> None:
        if self.transport is Transport.TCP:
            self._server = await asyncio.start_server(self._serve, self.address, self.port)
            return
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpMisfit(self), local_addr=(self.address, self.port), family=socket.AF_INET
        )

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        rng = random.Random(self.seed)
        try:
            if self.case is Case.CLOSING:
                return
            if self.case is Case.GARBAGE:
                # Some services speak first (FTP, SSH, Telnet): garbage greets too.
                writer.write(self.garbage(rng))
                await writer.drain()
            while data := await reader.read(4096):
                self.bytes_received += len(data)
                if self.case is Case.GARBAGE:
                    writer.write(self.garbage(rng))
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


class _UdpMisfit(asyncio.DatagramProtocol):
    def __init__(self, misfit: Misfit) -> None:
        self.misfit = misfit
        self.rng = random.Random(misfit.seed)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.misfit.datagrams += 1
        self.misfit.bytes_received += len(data)
        if self.misfit.case is Case.GARBAGE and self.transport is not None:
            self.transport.sendto(self.misfit.garbage(self.rng), addr)


def address_of(probe: str, case: Case) -> str:
    return f"127.27.{CASE_OCTET[case]}.{probe_names().index(probe) + 1}"


@contextlib.asynccontextmanager
async def misfit_for(probe: Probe, case: Case) -> AsyncIterator[Misfit]:
    """The misfit ``case`` needs, listening on the probe's first default port."""
    listener = Case.SILENT if case in (Case.OUT_OF_SCOPE, Case.LEDGER) else case
    device = Misfit(
        listener, probe.transport, address_of(probe.name, case), probe.default_ports[0], probe.name
    )
    if probe.transport is Transport.UDP and case is Case.CLOSING:
        yield device  # nothing listens: the kernel answers ICMP port unreachable
        return
    await device.start()
    try:
        yield device
    finally:
        await device.stop()


def target_for(probe: Probe, device: Misfit, case: Case) -> ProbeTarget:
    allowed = ELSEWHERE if case is Case.OUT_OF_SCOPE else CONTRACT_SCOPE
    manifest = Manifest(entries=()) if case is Case.LEDGER else probe.manifest
    return ProbeTarget(
        address=device.address,
        port=device.port,
        transport=probe.transport,
        connector=Connector(ScopeGuard([ScopeRule.build("contract", [allowed])])),
        ledger=RequestLedger(probe.name, manifest),
        options=OPTIONS.get(probe.name, {}),
    )


async def outcome_of(probe: Probe, target: ProbeTarget, case: Case) -> Outcome:
    """Run the probe once and name what came out; anything outside the contract propagates."""
    # A case expected to time out waits the short timeout: the outcome is the same, sooner.
    timeout_s = SILENT_TIMEOUT_S if expected(probe.name, case) is Outcome.TIMEOUT else TIMEOUT_S
    try:
        async with asyncio.timeout(HANG_LIMIT_S):
            result = await probe.observe(target, timeout_s=timeout_s)
    except ProbeTimeoutError:
        return Outcome.TIMEOUT
    except ProbeProtocolError:
        return Outcome.PROTOCOL_ERROR
    except ScopeError:
        return Outcome.SCOPE
    except ManifestViolationError:
        return Outcome.MANIFEST
    except Exception as exc:  # anything else breaks the contract: name its type
        pytest.fail(f"{probe.name} raised {type(exc).__name__} outside the contract: {exc!r}")
    if result is None:
        return Outcome.NONE
    assert isinstance(result, Observation)
    return Outcome.OBSERVATION


async def run_case(probe_name: str, case: Case) -> tuple[Outcome, Misfit]:
    probe = load_probes()[probe_name]
    async with misfit_for(probe, case) as device:
        outcome = await outcome_of(probe, target_for(probe, device, case), case)
        if case in (Case.OUT_OF_SCOPE, Case.LEDGER):
            await asyncio.sleep(0.05)  # let the misfit's loop see anything that might have left
    return outcome, device


def assert_reached_within_manifest(probe_name: str, device: Misfit) -> None:
    """The device was reached (the outcome is its doing), within the manifest's bounds."""
    manifest = load_probes()[probe_name].manifest
    if device.transport is Transport.TCP:
        assert 1 <= device.connections <= manifest.connections_per_device
    else:
        assert 1 <= device.datagrams <= sum(e.max_per_device for e in manifest.entries)


async def test_probe_contract_silent_device_times_out(probe_name: str) -> None:
    outcome, device = await run_case(probe_name, Case.SILENT)
    assert outcome is expected(probe_name, Case.SILENT)
    assert_reached_within_manifest(probe_name, device)


async def test_probe_contract_garbage_device_gives_protocol_error(probe_name: str) -> None:
    outcome, device = await run_case(probe_name, Case.GARBAGE)
    assert outcome is expected(probe_name, Case.GARBAGE)
    assert_reached_within_manifest(probe_name, device)


async def test_probe_contract_closing_device_gives_none(probe_name: str) -> None:
    outcome, device = await run_case(probe_name, Case.CLOSING)
    assert outcome is expected(probe_name, Case.CLOSING)
    if device.transport is Transport.TCP:
        assert_reached_within_manifest(probe_name, device)


async def test_probe_contract_out_of_scope_target_is_refused_before_sending(
    probe_name: str,
) -> None:
    outcome, device = await run_case(probe_name, Case.OUT_OF_SCOPE)
    assert outcome is expected(probe_name, Case.OUT_OF_SCOPE)
    assert (device.connections, device.datagrams, device.bytes_received) == (0, 0, 0)


async def test_probe_contract_ledger_refuses_first_request_before_sending(
    probe_name: str,
) -> None:
    outcome, device = await run_case(probe_name, Case.LEDGER)
    assert outcome is expected(probe_name, Case.LEDGER)
    differs = DIFFERS.get((probe_name, Case.LEDGER))
    if differs is None or not differs.bytes_sent:
        assert device.bytes_received == 0
        assert device.datagrams == 0


CASE_OF_TEST = {
    test_probe_contract_silent_device_times_out.__name__: Case.SILENT,
    test_probe_contract_garbage_device_gives_protocol_error.__name__: Case.GARBAGE,
    test_probe_contract_closing_device_gives_none.__name__: Case.CLOSING,
    test_probe_contract_out_of_scope_target_is_refused_before_sending.__name__: Case.OUT_OF_SCOPE,
    test_probe_contract_ledger_refuses_first_request_before_sending.__name__: Case.LEDGER,
}


def test_probe_contract_tables_name_only_registered_probes() -> None:
    named = {probe for probe, _ in DIFFERS} | {probe for probe, _ in VIOLATIONS} | set(OPTIONS)
    assert named <= set(probe_names())
    assert not set(DIFFERS) & set(VIOLATIONS)
