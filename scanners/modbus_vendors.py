"""Modbus private identification objects (0x80-0xFF) whose meaning a vendor documents: data.

The Modbus specification leaves objects 0x80-0xFF to each device ("private objects", Modbus
Application Protocol V1.1b3 §6.21, table "Device identification objects"): their text is anything
the maker chose ("SNMP agent enabled", a hardware revision, a serial). The probe gives one a meaning
only where the vendor's manual says what it holds, listed here with that manual as the source; every
other private object stays raw in the ``objects`` fact. A layout applies when object 0x00 (the
vendor name) is the one the manual shows, compared case-insensitively without surrounding spaces.

Add a vendor with the manual's title, revision and section; never from what devices happened to
send.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# The facts a private object may carry: device identity only where the vendor states it.
PRIVATE_OBJECT_KEYS = frozenset({"serial"})


@dataclass(frozen=True, slots=True)
class PrivateObjects:
    """What a vendor documents about its private objects: object id -> fact key."""

    vendor: str
    facts: Mapping[int, str]
    source: str


PRIVATE_OBJECTS: tuple[PrivateObjects, ...] = (
    PrivateObjects(
        vendor="Bosch Rexroth B.V.",
        facts=MappingProxyType({0x81: "serial"}),
        source=(
            "Rexroth CIMS MK IV instruction manual F 037 300 069 (2013-05-21), appendix C.4: "
            "object 00h vendor name 'Bosch Rexroth B.V.', C.4.6 Read Serial Number (81h)"
        ),
    ),
)

_BY_VENDOR: Mapping[str, Mapping[int, str]] = MappingProxyType(
    {entry.vendor.strip().casefold(): entry.facts for entry in PRIVATE_OBJECTS}
)


def documented_private_objects(vendor: str | None) -> Mapping[int, str]:
    """Object id -> fact key of the private objects ``vendor`` documents; empty when none."""
    if not vendor:
        return {}
    return _BY_VENDOR.get(vendor.strip().casefold(), {})
