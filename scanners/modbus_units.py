"""Opt-in Modbus/TCP gateway walk: the gateway's own identity (unit 0xFF) and each unit behind it.

The identification of each unit is :mod:`scanners.modbus`'s (FC 43/14, FC 17 as fallback), on one
connection, one unit at a time, paced. Facts keys are :mod:`scanners.modbus`'s: the top-level
identity keys describe the gateway (unit 0xFF); ``gateway``; ``units`` (one identity per unit that
answered, each with its ``unit_id``); ``absent_units`` (unit ids that answered a gateway exception,
nothing identifying, or nothing); ``walk_stopped`` (why the walk ended early).
"""

import asyncio
import re
from collections.abc import Mapping
from typing import ClassVar

from cybermission.errors import ProbeTimeoutError, ValidationError
from cybermission.probes import (
    DEFAULT_PROBE_ORDER,
    Facts,
    IdentityAuthority,
    Intrusiveness,
    JSONValue,
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
    Transport,
)
from scanners.modbus import (
    MAX_CONTINUATIONS,
    MAX_READ_BYTES,
    MODBUS_TCP_PORT,
    REQUEST_BASIC,
    REQUEST_EXTENDED,
    REQUEST_REGULAR,
    REQUEST_SERVER_ID,
    UNIT_ID_DIRECT,
    Session,
    identify_unit,
)
from scanners.stream import ProbeStream, observe_stream

# Unit walk: every individual address of a serial line (Modbus over serial line V1.02 §2.2).
WALK_UNITS_DEFAULT = range(1, 248)
MAX_WALK_UNITS = 247
MAX_SILENT_UNITS = 3
DEFAULT_UNIT_PACE_S = 0.5
# An answer per unit and category, continuations included: bounded like the requests.
MAX_WALK_READ_BYTES = MAX_READ_BYTES * 64
_UNIT_SPAN = re.compile(r"(\d{1,3})-(\d{1,3})")


def unit_range(options: Mapping[str, JSONValue]) -> list[int]:
    """The units ``modbus-units`` walks: ``options["unit_ids"]``, a list of unit ids and
    "first-last" ranges (``[1, 5, "17-32"]``), default every unit address 1-247 (Modbus over
    serial line V1.02 §2.2: 1-247 are the individual addresses); at most ``MAX_WALK_UNITS``."""
    raw = options.get("unit_ids")
    if raw is None:
        return list(WALK_UNITS_DEFAULT)
    if not isinstance(raw, list) or not raw:
        raise ValidationError("option unit_ids: expected a list of unit ids and 'a-b' ranges")
    units: list[int] = []
    for value in raw:
        if isinstance(value, str) and (match := _UNIT_SPAN.fullmatch(value.strip())):
            first, last = int(match.group(1)), int(match.group(2))
            span = range(first, last + 1) if first <= last <= 255 else range(0)
        elif isinstance(value, int) and not isinstance(value, bool):
            span = range(value, value + 1) if 0 <= value <= 255 else range(0)
        else:
            span = range(0)
        if not span:
            raise ValidationError(f"option unit_ids: {value!r} is not a unit id or range in 0..255")
        units.extend(unit for unit in span if unit not in units and unit != UNIT_ID_DIRECT)
        if len(units) > MAX_WALK_UNITS:
            raise ValidationError(f"option unit_ids: more than {MAX_WALK_UNITS} units")
    return units


class ModbusUnitWalkProbe:
    """Opt-in: identify a Modbus/TCP gateway (unit 0xFF) and each unit behind it, paced.

    One connection. First unit 0xFF, which a gateway answers for itself (Modbus/TCP guide
    §4.4.2); its identity is the observation's own, as :class:`ModbusProbe` reports it. Then each
    unit of :func:`unit_range` (default 1-247), ``options["request_interval_s"]`` apart: the scan's
    per-host pacing (``1 / pacing.per_host_rate_per_s``, which every scan passes), else
    ``DEFAULT_UNIT_PACE_S``, the safe profile's 2 requests/s. A unit that answers a gateway
    exception (0x0A/0x0B), nothing identifying, or stays silent is absent. ``MAX_SILENT_UNITS``
    silent units in a row stop the walk (a gateway that stops answering is left alone, DESIGN.md
    §2); ``walk_stopped`` says where.
    """

    name: ClassVar[str] = "modbus-units"
    protocol: ClassVar[str] = "modbus"
    default_ports: ClassVar[tuple[int, ...]] = (MODBUS_TCP_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = True
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    # Requests per unit category: one plus the bounded continuations; units: 0xFF + the range.
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(
                REQUEST_BASIC,
                (1 + MAX_WALK_UNITS) * (1 + MAX_CONTINUATIONS),
                "FC 43/14 01 per unit (0xFF, then each unit of unit_ids)",
            ),
            ManifestEntry(
                REQUEST_REGULAR,
                (1 + MAX_WALK_UNITS) * (1 + MAX_CONTINUATIONS),
                "FC 43/14 02 per unit whose conformity level has regular objects",
            ),
            ManifestEntry(
                REQUEST_EXTENDED,
                (1 + MAX_WALK_UNITS) * (1 + MAX_CONTINUATIONS),
                "FC 43/14 03 per unit whose conformity level has extended objects",
            ),
            ManifestEntry(
                REQUEST_SERVER_ID, 1 + MAX_WALK_UNITS, "FC 17 per unit that refused FC 43"
            ),
        ),
        connections_per_device=1,
        notes=(
            f"unit 0xFF (the gateway), then options unit_ids (default 1-{MAX_WALK_UNITS}, "
            f"at most {MAX_WALK_UNITS} units), one unit per request_interval_s (the per-host "
            f"pacing; default {DEFAULT_UNIT_PACE_S} s); stops after {MAX_SILENT_UNITS} "
            "silent units in a row; one connection"
        ),
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        units = unit_range(target.options)
        pace = target.options.get("request_interval_s", DEFAULT_UNIT_PACE_S)
        if isinstance(pace, bool) or not isinstance(pace, int | float) or pace < 0:
            raise ValidationError(f"option request_interval_s: expected seconds >= 0, got {pace!r}")
        pace_s = float(pace)

        async def walk(stream: ProbeStream) -> Facts:
            session = Session(stream)
            facts: Facts = {"unit_id": UNIT_ID_DIRECT}
            try:
                own, refusal = await identify_unit(session, UNIT_ID_DIRECT, timeout_s=timeout_s)
            except ProbeTimeoutError:
                silent = 1
            else:
                silent = 0
                if own.identified:
                    facts.update(own.facts())
                elif own.exceptions:
                    facts["exceptions"] = dict(own.exceptions)
                facts["gateway"] = refusal is not None
            found: list[JSONValue] = []
            absent: list[JSONValue] = []
            for unit_id in units:
                if silent >= MAX_SILENT_UNITS:
                    facts["walk_stopped"] = f"{silent} units in a row unanswered before {unit_id}"
                    break
                await asyncio.sleep(pace_s)
                try:
                    identity, refusal = await identify_unit(session, unit_id, timeout_s=timeout_s)
                except ProbeTimeoutError:
                    silent += 1
                    absent.append(unit_id)
                    continue
                silent = 0
                if refusal is not None or not identity.identified:
                    absent.append(unit_id)
                else:
                    found.append(identity.facts())
            if not found and stream.read_bytes == 0:
                raise ProbeTimeoutError(f"{target.address}: no unit answered")
            facts.update({"units": found, "absent_units": absent})
            return facts

        return await observe_stream(
            self, target, walk, timeout_s=timeout_s, max_read_bytes=MAX_WALK_READ_BYTES
        )
