"""Loopback DNP3 lab outstations: the ``dnp3-outstation`` engine (PyPI, MIT) plus Group 0.

Each device runs the third-party sync ``Outstation`` (link status, reset link, READ/WRITE of
analog inputs) behind our asyncio listener, which records every frame received (data link
function, application function and object headers, decoded by the library's own parsers): the
read-only proof of the probe tests. That engine has no device attributes, so a READ of Group 0
is answered here from the device's identity, encoded as IEEE 1815-2012 §11.9.2 specifies
(object header g0 vN qualifier 0x00 index 0, then data type 1 = VSTR, length, value): no capture
of a Group 0 answer exists in ../shared/data/pcaps/dnp3.
"""

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field

from dnp3_outstation.application import ApplicationParseError, ReadRequest, parse_request
from dnp3_outstation.datalink import (
    FC_MASTER_USER_DATA_UNCONFIRMED,
    DatalinkFrame,
    DatalinkParseError,
    build_frame,
    parse_frame,
)
from dnp3_outstation.outstation import Outstation
from dnp3_outstation.transport import TransportSegment, build_segment, parse_segment

from cybermission.probes import JSONValue

logger = logging.getLogger(__name__)

DNP3_PORT = 20000
BROADCAST_ADDRESSES = frozenset({0xFFFD, 0xFFFE, 0xFFFF})
# Group 0 variation -> identity key (IEEE 1815-2012 Table 11-1).
ATTRIBUTE_KEYS = {
    252: "vendor",
    250: "model",
    242: "firmware",
    243: "hardware_version",
    248: "serial",
    246: "device_id",
    247: "location",
}


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """What one frame asked: data link function, application function, (group, variation)s."""

    link_function: int
    app_function: int | None = None
    objects: tuple[tuple[int, int], ...] = ()


@dataclass(eq=False)
class Dnp3LabDevice:
    """A DNP3 outstation on ``address:port`` with link address ``outstation_address``."""

    name: str
    address: str
    port: int
    outstation_address: int
    master_address: int
    attributes: dict[int, str]
    identity: dict[str, JSONValue]
    # Many stacks answer link requests sent to a broadcast address; the library does not.
    answers_broadcast: bool = False
    protocol: str = "dnp3"
    requests: list[ReceivedFrame] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def clear_log(self) -> None:
        self.requests.clear()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.address, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        engine = Outstation(
            master_addr=self.master_address, outstation_addr=self.outstation_address
        )
        try:
            while True:
                header = await reader.readexactly(10)
                data_bytes = max(0, header[2] - 5)
                blocks = (data_bytes + 15) // 16
                wire = header + await reader.readexactly(data_bytes + 2 * blocks)
                reply = self._answer(engine, wire)
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def _answer(self, engine: Outstation, wire: bytes) -> bytes | None:
        try:
            frame = parse_frame(wire)
        except DatalinkParseError:
            self.requests.append(ReceivedFrame(link_function=-1))
            return None
        request: ReadRequest | None = None
        app_function: int | None = None
        objects: tuple[tuple[int, int], ...] = ()
        if frame.user_data:
            try:
                payload = parse_segment(frame.user_data).payload
                app_function = payload[1] if len(payload) > 1 else None
                parsed = parse_request(payload)
            except (ApplicationParseError, ValueError):
                parsed = None
            if isinstance(parsed, ReadRequest):
                request = parsed
                objects = tuple((h.group, h.variation) for h in parsed.object_headers)
        self.requests.append(ReceivedFrame(frame.function_code, app_function, objects))
        destination = frame.dest
        if self.answers_broadcast and destination in BROADCAST_ADDRESSES:
            destination = self.outstation_address
        if destination != self.outstation_address:
            return None
        if request is not None and objects and all(group == 0 for group, _ in objects):
            return self._attributes_reply(request)
        if destination != frame.dest:
            wire = build_frame(
                DatalinkFrame(
                    is_from_master=frame.is_from_master,
                    is_primary=frame.is_primary,
                    fcb=frame.fcb,
                    fcv_or_dfc=frame.fcv_or_dfc,
                    function_code=frame.function_code,
                    dest=destination,
                    src=frame.src,
                    user_data=frame.user_data,
                )
            )
        return engine.handle_inbound(wire)

    def _attributes_reply(self, request: ReadRequest) -> bytes:
        body = bytearray((0xC0 | request.header_seq, 0x81, 0x00, 0x00))  # FIR FIN, RESPONSE, IIN
        for header in request.object_headers:
            value = self.attributes.get(header.variation)
            if value is None:
                continue
            raw = value.encode("utf-8")[:255]
            body += bytes((0, header.variation, 0x00, 0, 0, 1, len(raw))) + raw
        if len(body) == 4:
            body[3] = 0x02  # IIN2.1 object unknown (§4.2.2.7.2)
        segment = build_segment(TransportSegment(fir=True, fin=True, seq=0, payload=bytes(body)))
        return build_frame(
            DatalinkFrame(
                is_from_master=False,
                is_primary=True,
                fcb=False,
                fcv_or_dfc=False,
                function_code=FC_MASTER_USER_DATA_UNCONFIRMED,
                dest=self.master_address,
                src=self.outstation_address,
                user_data=segment,
            )
        )


def _device(
    name: str,
    address: str,
    port: int,
    outstation: int,
    master: int,
    identity: dict[str, str],
    *,
    answers_broadcast: bool = False,
) -> Dnp3LabDevice:
    attributes = {v: identity[k] for v, k in ATTRIBUTE_KEYS.items() if k in identity}
    expected: dict[str, JSONValue] = {"outstation_address": outstation, **identity}
    return Dnp3LabDevice(
        name=name,
        address=address,
        port=port,
        outstation_address=outstation,
        master_address=master,
        attributes=attributes,
        identity=expected,
        answers_broadcast=answers_broadcast,
    )


def dnp3_lab_devices(base: str = "127.0.10.0", *, port: int = DNP3_PORT) -> list[Dnp3LabDevice]:
    """Three outstations on ``base`` + 62..64 with distinct addresses and identities."""
    net = ipaddress.IPv4Address(base)
    return [
        _device(
            "dnp3-rtu-sel3530",
            str(net + 62),
            port,
            10,
            1,
            {
                "vendor": "Schweitzer Engineering Laboratories",
                "model": "SEL-3530 RTAC",
                "firmware": "R148-V2",
                "serial": "1173520291",
                "location": "Substation North feeder bay 3",
            },
            answers_broadcast=True,
        ),
        _device(
            "dnp3-ied-ge-d20",
            str(net + 63),
            port,
            1024,
            3,
            {
                "vendor": "GE Grid Solutions",
                "model": "D20MX",
                "firmware": "3.20",
                "serial": "D20MX-445871",
            },
        ),
        _device(
            "dnp3-water-scadapack",
            str(net + 64),
            port,
            4,
            1,
            {
                "vendor": "Schneider Electric",
                "model": "SCADAPack 570",
                "firmware": "9.3.1",
                "serial": "SP570-20091",
                "device_id": "WTP-LIFT-STATION-2",
            },
        ),
    ]
