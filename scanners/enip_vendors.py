"""ODVA CIP vendor ids and device profile (type) names used to label EtherNet/IP identities.

A subset of the vendor ids ODVA assigns (as published in ODVA's vendor id list and carried by the
Wireshark CIP dissector): the automation vendors a city-wide OT inventory meets most. An id missing
here is reported as ``vendor_id`` alone with ``vendor`` "vendor id N". Device types are the CIP
device profiles of the CIP specification, Volume 1, chapter 6.
"""

from collections.abc import Mapping
from types import MappingProxyType

ENIP_VENDORS: Mapping[int, str] = MappingProxyType(
    {
        1: "Rockwell Automation/Allen-Bradley",
        2: "Namco Controls Corp.",
        3: "Honeywell International Inc.",
        4: "Parker Hannifin Corporation",
        5: "Rockwell Automation/Reliance Elec.",
        7: "SMC Corporation",
        8: "Molex Incorporated",
        12: "Banner Engineering Corporation",
        13: "Belden Wire & Cable Company",
        26: "Festo",
        40: "WAGO Corporation",
        43: "BALLUFF",
        44: "Yaskawa America, Inc.",
        45: "Eurotherm by Schneider Electric",
        46: "ABB, Inc.",
        47: "Omron Corporation",
        48: "TURCK",
        50: "Real Time Automation",
        56: "Softing",
        57: "Pepperl+Fuchs",
        68: "Eaton Electrical",
        71: "Toshiba Corporation",
        74: "Hitachi, Ltd.",
        75: "ABB Robotics",
        82: "Mitsubishi Electric Automation, Inc.",
        83: "OPTO 22",
        87: "Buerkert Fluid Control Systems",
        90: "HMS Networks",
        94: "Advantech Corporation",
        95: "Square D Company",
        97: "Danfoss Drives A/S",
        108: "Beckhoff Automation",
        109: "National Instruments",
        121: "KUKA Deutschland GmbH",
        143: "GE Industrial Systems",
        145: "Siemens Energy & Automation/Drives",
        153: "Watlow",
        159: "IDEC Corporation",
        161: "Mitsubishi Electric Corporation",
        171: "Denso Wave Incorporated",
        176: "Red Lion",
        181: "Pilz GmbH & Co KG",
        209: "Contemporary Controls",
        243: "Schneider Electric",
        250: "Yokogawa Electric Corporation",
        255: "Bosch Rexroth",
        257: "Control Techniques PLC",
        259: "LS ELECTRIC",
        283: "Hilscher GmbH",
        287: "Bosch Rexroth AG",
        309: "ProSoft Technology",
        315: "SEW Eurodrive GmbH",
        319: "Fuji Electric Group",
        322: "ifm electronic gmbh",
        345: "Endress + Hauser",
        356: "FANUC Robotics America",
        367: "Keyence Corporation",
    }
)

# CIP Vol. 1 §6-1 device profiles (Identity object attribute 2).
DEVICE_TYPES: Mapping[int, str] = MappingProxyType(
    {
        0x00: "Generic Device (deprecated)",
        0x02: "AC Drive",
        0x03: "Motor Overload",
        0x04: "Limit Switch",
        0x05: "Inductive Proximity Switch",
        0x06: "Photoelectric Sensor",
        0x07: "General Purpose Discrete I/O",
        0x09: "Resolver",
        0x0C: "Communications Adapter",
        0x0E: "Programmable Logic Controller",
        0x10: "Position Controller",
        0x13: "DC Drive",
        0x15: "Contactor",
        0x16: "Motor Starter",
        0x17: "Soft Start",
        0x18: "Human-Machine Interface",
        0x1A: "Mass Flow Controller",
        0x1B: "Pneumatic Valve",
        0x1C: "Vacuum Pressure Gauge",
        0x1D: "Process Control Value",
        0x22: "Encoder",
        0x23: "Safety Discrete I/O Device",
        0x24: "Fluid Flow Controller",
        0x25: "CIP Motion Drive",
        0x28: "CIP Modbus Device",
        0x29: "CIP Modbus Translator",
        0x2A: "Safety Analog I/O Device",
        0x2B: "Generic Device (keyable)",
        0x2C: "Managed Switch",
    }
)


def vendor_name(vendor_id: int) -> str:
    """The vendor's name, or "vendor id N" when the id is not in the table."""
    return ENIP_VENDORS.get(vendor_id, f"vendor id {vendor_id}")
