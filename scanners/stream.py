"""The TCP plumbing every probe shares: counted sends, bounded reads, polite close, outcomes.

A probe speaks to a device through one :class:`ProbeStream` opened by :func:`open_stream` (the
connector asks the scope guard right there) or, for the usual one-connection identification,
through :func:`observe_stream`, which also maps the outcomes the probe contract names:

- every request is counted by the ledger *before* its bytes are queued (``send``), so an
  undeclared or excess request raises ``ManifestViolationError`` and nothing leaves;
- reads are bounded in total (``max_read_bytes``); silence becomes ``ProbeTimeoutError``
  (``deadline``); a close or reset in the middle of an answer becomes ``ProbeProtocolError``;
- a peer that closes or resets before sending one byte raises :class:`PeerClosedError`, which
  :func:`observe_stream` turns into ``None`` ("not this protocol"): it never leaves a probe;
- ``start_tls`` upgrades the connection without verifying the peer (HTTPS, Foxs read the
  certificate); a failed handshake or a broken TLS record is a ``ProbeProtocolError``.
"""

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import NoReturn, TypeVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.net import close_politely
from cybermission.probes import Facts, Observation, Probe, ProbeTarget, RequestLedger

logger = logging.getLogger(__name__)

Answer = TypeVar("Answer")


class PeerClosedError(Exception):
    """The peer closed or reset the connection before sending one byte: not our protocol.

    A control-flow signal inside a probe (mapped to ``None``), never raised out of ``observe``.
    """


class ClosedBetweenAnswersError(ProbeProtocolError):
    """The peer closed cleanly after answering, before the next answer began.

    Still a protocol error for most probes; one that can report what it read as ``incomplete``
    catches it.
    """


class ProbeStream:
    """One guarded TCP connection of one probe to one device."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        ledger: RequestLedger,
        address: str,
        max_read_bytes: int,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.ledger = ledger
        self.address = address
        self.max_read_bytes = max_read_bytes
        self.read_bytes = 0

    def send(self, request: str, data: bytes) -> None:
        """Count ``request`` in the ledger, then queue ``data`` (``flush`` or a read sends it)."""
        self.ledger.spend(request)
        self.writer.write(data)

    async def flush(self) -> None:
        """Wait until the queued bytes are handed to the kernel (flow control)."""
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            self._lost(exc)

    @asynccontextmanager
    async def deadline(self, timeout_s: float, waiting_for: str) -> AsyncIterator[None]:
        """Silence for ``timeout_s`` inside the block raises ``ProbeTimeoutError``."""
        try:
            async with asyncio.timeout(timeout_s):
                yield
        except TimeoutError as exc:
            raise ProbeTimeoutError(f"{self.address}: no {waiting_for}") from exc

    async def exchange(
        self,
        request: str,
        data: bytes,
        read: Callable[[], Awaitable[Answer]],
        *,
        timeout_s: float,
    ) -> Answer:
        """Send one counted request and return what ``read`` reads within ``timeout_s``."""
        self.send(request, data)
        async with self.deadline(timeout_s, f"answer to {request}"):
            await self.flush()
            return await read()

    async def start_tls(self, timeout_s: float) -> ssl.SSLObject | None:
        """TLS on this connection, the peer unverified: probes read the certificate a device
        presents, they do not trust it. A peer that closes before answering is ``PeerClosedError``
        (``None`` for the probe); a handshake that answers wrongly is a ``ProbeProtocolError``."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        async with self.deadline(timeout_s, "TLS handshake"):
            try:
                await self.writer.start_tls(context)
            except (ssl.SSLEOFError, ConnectionError) as exc:
                # Closed or reset before a byte of handshake came back: not a TLS service,
                # the same "peer closed first" as on a plain connection.
                if self.read_bytes == 0:
                    raise PeerClosedError from exc
                raise ProbeProtocolError(f"{self.address}: TLS handshake failed") from exc
            except ssl.SSLError as exc:  # bytes came back, and they are not a TLS handshake
                raise ProbeProtocolError(f"{self.address}: TLS handshake failed") from exc
        ssl_object = self.writer.get_extra_info("ssl_object")
        return ssl_object if isinstance(ssl_object, ssl.SSLObject) else None

    async def read_exactly(self, size: int) -> bytes:
        """``size`` bytes, within the connection's total read budget."""
        self._budget(size)
        try:
            data = await self.reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            self._incomplete(exc)
        except (ConnectionError, OSError) as exc:
            self._lost(exc)
        self.read_bytes += size
        return data

    async def read_until(self, separator: bytes, max_bytes: int) -> bytes:
        """Bytes up to and including ``separator``, at most ``max_bytes`` of them (and within the
        read budget); a close before the separator is handled as in ``read_exactly``."""
        self._budget(1)
        try:
            data = await self.reader.readuntil(separator)
        except asyncio.IncompleteReadError as exc:
            self._incomplete(exc)
        except asyncio.LimitOverrunError as exc:
            raise ProbeProtocolError(f"{self.address}: no {separator!r} in a bounded read") from exc
        except (ConnectionError, OSError) as exc:
            self._lost(exc)
        if len(data) > max_bytes:
            raise ProbeProtocolError(f"{self.address}: no {separator!r} in {max_bytes} bytes")
        self._budget(len(data))
        self.read_bytes += len(data)
        return data

    async def read_framed(self, header_bytes: int, body_bytes: Callable[[bytes], int]) -> bytes:
        """A header, then the ``body_bytes(header)`` bytes it announces (checked there)."""
        header = await self.read_exactly(header_bytes)
        return header + await self.read_exactly(body_bytes(header))

    async def read_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` that are there; ``b""`` when the peer closed after an answer."""
        size = min(max_bytes, self.max_read_bytes - self.read_bytes)
        if size <= 0:
            raise ProbeProtocolError(f"device sent more than {self.max_read_bytes} bytes")
        try:
            data = await self.reader.read(size)
        except (ConnectionError, OSError) as exc:
            self._lost(exc)
        if not data and self.read_bytes == 0:
            self.ledger.early_closes += 1
            raise PeerClosedError
        self.read_bytes += len(data)
        return data

    def _budget(self, size: int) -> None:
        if self.read_bytes + size > self.max_read_bytes:
            raise ProbeProtocolError(f"device sent more than {self.max_read_bytes} bytes")

    def _incomplete(self, exc: asyncio.IncompleteReadError) -> NoReturn:
        if not exc.partial and self.read_bytes == 0:
            raise PeerClosedError from exc
        if not exc.partial:
            raise ClosedBetweenAnswersError(f"{self.address}: connection closed") from exc
        raise ProbeProtocolError(
            f"{self.address}: connection closed in the middle of an answer"
        ) from exc

    def _lost(self, exc: BaseException) -> NoReturn:
        if isinstance(exc, ssl.SSLError):  # an OSError, but a broken TLS record is no close
            raise ProbeProtocolError(f"{self.address}: {exc.__class__.__name__}") from exc
        if self.read_bytes == 0:
            self.ledger.early_closes += 1
            raise PeerClosedError from exc
        raise ProbeProtocolError(f"{self.address}: connection lost") from exc


@asynccontextmanager
async def open_stream(
    target: ProbeTarget, *, timeout_s: float, max_read_bytes: int
) -> AsyncIterator[ProbeStream]:
    """Connect through the target's guarded connector; close politely (FIN) however it ends."""
    reader, writer = await target.connector.open_tcp(
        target.address, target.port, timeout_s=timeout_s
    )
    try:
        yield ProbeStream(
            reader,
            writer,
            ledger=target.ledger,
            address=target.address,
            max_read_bytes=max_read_bytes,
        )
    finally:
        await close_politely(writer)


def observation(probe: Probe, target: ProbeTarget, facts: Facts) -> Observation:
    """The probe's observation of ``target``."""
    return Observation(
        probe=probe.name,
        protocol=probe.protocol,
        address=target.address,
        port=target.port,
        transport=probe.transport,
        facts=facts,
    )


async def observe_stream(
    probe: Probe,
    target: ProbeTarget,
    identify: Callable[[ProbeStream], Awaitable[Facts | None]],
    *,
    timeout_s: float,
    max_read_bytes: int,
) -> Observation | None:
    """One connection, ``identify`` on it, the outcomes mapped (see the module docstring).

    ``identify`` returns the facts, or ``None`` when the answers say "not this protocol".
    """
    try:
        async with open_stream(target, timeout_s=timeout_s, max_read_bytes=max_read_bytes) as s:
            facts = await identify(s)
    except PeerClosedError:
        logger.info(
            "peer closed without answering", extra={"probe": probe.name, "address": target.address}
        )
        return None
    except ProbeProtocolError:
        logger.warning(
            "answer does not decode",
            extra={"probe": probe.name, "address": target.address, "port": target.port},
        )
        raise
    return None if facts is None else observation(probe, target, facts)
