"""IANA Private Enterprise Numbers (SMI Network Management Private Enterprise Codes): a subset.

Used to name the vendor behind an SNMP sysObjectID (1.3.6.1.4.1.<number>...). Industrial and
network vendors seen on OT networks; a number missing here keeps ``enterprise`` numeric.
:data:`AGENT_ENTERPRISES` are the numbers of SNMP agents and operating systems, whose sysObjectID
says what software answers, never who made the device.
"""

from collections.abc import Mapping
from types import MappingProxyType

ENTERPRISE_NUMBERS: Mapping[int, str] = MappingProxyType(
    {
        9: "Cisco",
        11: "Hewlett-Packard",
        43: "3Com",
        95: "Rockwell Automation",
        171: "D-Link",
        248: "Hirschmann",
        318: "APC",
        674: "Dell",
        890: "Zyxel",
        1916: "Extreme Networks",
        2011: "Huawei",
        2620: "Check Point",
        2636: "Juniper Networks",
        3833: "Schneider Electric",
        4329: "Siemens",
        4526: "Netgear",
        6527: "Nokia (Alcatel-Lucent)",
        8691: "Moxa",
        12356: "Fortinet",
        13576: "WAGO",
        14988: "MikroTik",
        25506: "H3C",
        41112: "Ubiquiti",
    }
)


# Enterprise number -> facts about the software that answers (never the device's vendor).
AGENT_ENTERPRISES: Mapping[int, Mapping[str, str]] = MappingProxyType(
    {
        311: {"os_vendor": "Microsoft"},
        2021: {"software": "UCD-SNMP", "software_vendor": "UC Davis"},
        8072: {"software": "net-snmp", "software_vendor": "net-snmp"},
    }
)
