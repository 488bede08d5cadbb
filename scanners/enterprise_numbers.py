"""IANA Private Enterprise Numbers (SMI Network Management Private Enterprise Codes): a subset.

Used to name the vendor behind an SNMP sysObjectID (1.3.6.1.4.1.<number>...). Industrial and
network vendors seen on OT networks; a number missing here keeps ``enterprise`` numeric.
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
        311: "Microsoft",
        318: "APC",
        674: "Dell",
        890: "Zyxel",
        1916: "Extreme Networks",
        2011: "Huawei",
        2021: "UC Davis (net-snmp)",
        2620: "Check Point",
        2636: "Juniper Networks",
        3833: "Schneider Electric",
        4329: "Siemens",
        4526: "Netgear",
        6527: "Nokia (Alcatel-Lucent)",
        8072: "net-snmp",
        8691: "Moxa",
        12356: "Fortinet",
        13576: "WAGO",
        14988: "MikroTik",
        25506: "H3C",
        41112: "Ubiquiti",
    }
)
