"""Observations from an nmap XML report (``nmap -oX``): what teams already have, imported.

Each open port of each host that is up becomes one observation, mapped to the facts the built-in
probe of that protocol gives, so the inventory, the identities and the rules treat it the same:

- ICS scripts: ``modbus-discover`` (device identification, objects 0-2: vendor, product code,
  revision), ``s7-info`` (order number, firmware, module type, serial, system name, plant
  identification, copyright), ``enip-info`` (vendor by CIP id, product name, product code,
  revision, serial), ``bacnet-info`` (vendor, model, firmware, application software, object
  name, description, location, instance), ``fox-info``, ``omron-info``, ``pcworx-info``,
  ``knx-gateway-info``, ``snmp-sysdescr``;
- the port's protocol is the installed probe's for that port and transport (``cybermission
  probes``), else nmap's service name; ``-sV`` service, product, version and CPEs are kept as
  ``nmap_*`` facts, never as the device's identity (an HTTP server's product is not the PLC's);
- a MAC address nmap saw (same segment) is the ``mac`` fact, as the built-in probes report it.

The report is parsed with defusedxml (no entity expansion, no external entities); the file is
bounded (``MAX_REPORT_BYTES``) and every string is bounded. Addresses in it are data: nothing is
sent. modbus-discover joins the identification objects with spaces, so the vendor is everything
before the last two words (product code, revision): a product code with a space is misread.
"""

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from cybermission.errors import ValidationError
from cybermission.probes import Facts, Observation, PassiveDecoder, Probe, Transport, load_probes
from cybermission.traffic import Conversation
from scanners.bacnet_vendors import BACNET_VENDORS
from scanners.enip_vendors import vendor_name

logger = logging.getLogger(__name__)

MAX_REPORT_BYTES = 512 * 1024 * 1024
MAX_TEXT = 200

_VENDOR_ID = re.compile(r"\((\d+)\)\s*$")

# The probe of each ICS script: its observations carry that probe's name and protocol.
SCRIPT_PROBES: Mapping[str, str] = {
    "modbus-discover": "modbus",
    "s7-info": "s7",
    "enip-info": "enip",
    "bacnet-info": "bacnet",
    "fox-info": "fox",
    "omron-info": "fins",
    "pcworx-info": "pcworx",
    "knx-gateway-info": "knx",
    "snmp-sysdescr": "snmp",
}


def _text(value: str | None) -> str:
    return (value or "").strip()[:MAX_TEXT]


def _elems(script: Element) -> dict[str, str]:
    """A script's ``<elem key=...>`` values, nested tables flattened (the first of a key wins)."""
    found: dict[str, str] = {}
    for elem in script.iter("elem"):
        key = elem.get("key")
        if key and key not in found and _text(elem.text):
            found[key] = _text(elem.text)
    return found


def _renamed(values: Mapping[str, str], names: Mapping[str, str]) -> Facts:
    """The script's values a probe also reports, under the probe's fact names."""
    return {fact: values[key] for key, fact in names.items() if values.get(key)}


def _shared_prefix(words: Sequence[str], other: Sequence[str]) -> list[str]:
    """The leading words ``words`` shares with ``other``: the vendor, where the Report Server ID
    text starts with it too ("Schneider Electric Modicon M340" / "Schneider Electric BMX P34")."""
    shared: list[str] = []
    for word, theirs in zip(words, other, strict=False):
        if word != theirs:
            break
        shared.append(word)
    return shared


def modbus_facts(script: Element) -> Facts:
    """modbus-discover: the first unit that answered, its device identification split."""
    facts: Facts = {}
    for table in script.findall("table"):
        values = {e.get("key"): _text(e.text) for e in table.findall("elem")}
        key = table.get("key", "")
        if key.startswith("sid 0x"):
            facts["unit_id"] = int(key[len("sid 0x") :], 16)
        identification = values.get("Device identification", "")
        words = identification.split(" ")
        if len(words) >= 3:
            vendor_words = _shared_prefix(words[:-2], values.get("Slave ID data", "").split(" "))
            facts["vendor"] = " ".join(vendor_words or words[:-2])
            facts["product_code"] = " ".join(words[len(vendor_words or words[:-2]) : -1])
            facts["revision"] = words[-1]
        elif identification:
            facts["device_identification"] = identification
        if values.get("Slave ID data"):
            facts["slave_id_data"] = values["Slave ID data"]
        if facts:
            break
    return facts


S7_FACTS: Mapping[str, str] = {
    "Module": "order_number",
    "Basic Hardware": "hardware_order_number",
    "System Name": "system_name",
    "Module Type": "module_type",
    "Serial Number": "serial",
    "Plant Identification": "plant_identification",
    "Copyright": "copyright",
}


_S7_SERIAL = re.compile(r"^S [A-Z0-9]-[A-Z0-9]{8,}$")
_S7_COMPONENTS = (
    "System Name",
    "Module Type",
    "Serial Number",
    "Plant Identification",
    "Copyright",
)


def _s7_component_values(values: Mapping[str, str]) -> dict[str, str]:
    """s7-info reads the SZL 0x001C records at fixed offsets, as an S7-300 orders them; where a
    CPU orders them otherwise (S7-1200) its labels shift. Then only what the values themselves
    show is kept: the serial by its form, the module type as the ``CPU ...`` name."""
    components = {key: values[key] for key in _S7_COMPONENTS if values.get(key)}
    if _S7_SERIAL.match(components.get("Serial Number", "")) or not components:
        return components
    serial = next((v for v in components.values() if _S7_SERIAL.match(v)), None)
    module = next((v for v in components.values() if v.startswith("CPU ")), None)
    kept = {"Serial Number": serial, "Module Type": module}
    return {key: value for key, value in kept.items() if value}


def s7_facts(script: Element) -> Facts:
    values = _elems(script)
    values = {
        **{k: v for k, v in values.items() if k not in _S7_COMPONENTS},
        **_s7_component_values(values),
    }
    facts: Facts = {"vendor": "Siemens", **_renamed(values, S7_FACTS)}
    if "order_number" in facts:
        facts["product_code"] = facts["order_number"]
    if values.get("Version"):
        # The probe writes the version as V<major>.<minor>.<patch> (scanners/s7.py _version).
        version = values["Version"]
        facts["firmware"] = version if version[:1].isalpha() else f"V{version}"
    if "module_type" in facts:
        facts["model"] = facts["module_type"]
    return facts


def enip_facts(script: Element) -> Facts:
    values = _elems(script)
    facts: Facts = {}
    vendor = values.get("vendor", "")
    match = _VENDOR_ID.search(vendor)
    if match:
        facts["vendor_id"] = int(match.group(1))
        facts["vendor"] = vendor_name(int(match.group(1)))
    elif vendor:
        facts["vendor"] = vendor
    if values.get("productCode"):
        facts["product_code"] = values["productCode"]
    if values.get("revision"):
        facts["revision"] = facts["firmware"] = values["revision"]
    if values.get("serialNumber"):
        facts["serial"] = values["serialNumber"].lower()
    name = values.get("productName", "")
    if name:
        facts["product_name"] = facts["product"] = facts["model"] = name
    if values.get("type"):
        facts["device_type_name"] = values["type"]
    return facts


BACNET_FACTS: Mapping[str, str] = {
    "Vendor Name": "vendor_name",
    "Firmware": "firmware",
    "Application Software": "application_software",
    "Model Name": "model",
    "Object Name": "object_name",
    "Description": "description",
    "Location": "location",
}


def bacnet_facts(script: Element) -> Facts:
    values = _elems(script)
    facts: Facts = _renamed(values, BACNET_FACTS)
    match = _VENDOR_ID.search(values.get("Vendor ID", ""))
    if match:
        vendor_id = int(match.group(1))
        facts["vendor_id"] = vendor_id
        if vendor_id in BACNET_VENDORS:
            facts["vendor_id_name"] = BACNET_VENDORS[vendor_id]
    instance = values.get("Object-identifier", "")
    if instance.isdigit():
        facts["instance"] = int(instance)
        facts["object_identifier"] = f"device,{instance}"
    vendor = facts.get("vendor_name") or facts.get("vendor_id_name")
    if isinstance(vendor, str) and vendor:
        facts["vendor"] = vendor
    return facts


def generic_facts(script: Element) -> Facts:
    """Scripts with no probe-specific mapping: their values kept, prefixed, for rules to read."""
    output = _text(script.get("output"))
    facts: Facts = {f"nmap_{k.lower().replace(' ', '_')}": v for k, v in _elems(script).items()}
    if not facts and output:
        facts["nmap_output"] = output
    if script.get("id") == "snmp-sysdescr" and output:
        facts["sys_descr"] = output.splitlines()[0].strip()
    return facts


SCRIPT_FACTS = {
    "modbus-discover": modbus_facts,
    "s7-info": s7_facts,
    "enip-info": enip_facts,
    "bacnet-info": bacnet_facts,
}


def _port_probes(installed: Mapping[str, Probe]) -> dict[tuple[int, str], tuple[str, str]]:
    """(port, transport) -> (probe, protocol) of the installed non-optional probes."""
    found: dict[tuple[int, str], tuple[str, str]] = {}
    for name, probe in sorted(installed.items(), key=lambda item: item[1].order):
        if probe.optional:
            continue
        for port in probe.default_ports:
            found.setdefault((port, str(probe.transport)), (name, probe.protocol))
    return found


def _service_facts(service: Element | None) -> Facts:
    if service is None:
        return {}
    facts: Facts = {}
    for attr in ("name", "product", "version", "extrainfo", "devicetype"):
        value = _text(service.get(attr))
        if value:
            facts[f"nmap_{attr}"] = value
    cpes = [_text(c.text) for c in service.findall("cpe") if _text(c.text)]
    if cpes:
        facts["nmap_cpe"] = list(cpes)
    return facts


def _observed_at(host: Element, run: Element) -> datetime:
    stamp = host.get("endtime") or host.get("starttime") or run.get("start") or ""
    return datetime.fromtimestamp(int(stamp), UTC) if stamp.isdigit() else datetime.now(UTC)


def parse_nmap_report(data: bytes) -> Iterator[Observation]:
    """Every open port of every host that is up, as an observation (see the module docstring)."""
    try:
        root = fromstring(data)
    except (ParseError, DefusedXmlException) as exc:
        raise ValidationError(f"nmap report: not valid XML ({exc})") from exc
    if root.tag != "nmaprun":
        raise ValidationError(f"nmap report: the root is <{root.tag}>, not <nmaprun>")
    # Loaded once per report: load_probes instantiates every entry point.
    installed = load_probes()
    probes = _port_probes(installed)
    protocols = {name: probe.protocol for name, probe in installed.items()}
    for host in root.iter("host"):
        status = host.find("status")
        if status is not None and status.get("state") != "up":
            continue
        addresses = {a.get("addrtype"): a.get("addr", "") for a in host.findall("address")}
        address = addresses.get("ipv4") or addresses.get("ipv6")
        if not address:
            continue
        mac = addresses.get("mac")
        observed_at = _observed_at(host, root)
        for port in host.iter("port"):
            yield from _port_observation(port, address, mac, observed_at, probes, protocols)


def _port_observation(
    port: Element,
    address: str,
    mac: str | None,
    observed_at: datetime,
    probes: Mapping[tuple[int, str], tuple[str, str]],
    protocols: Mapping[str, str],
) -> Iterator[Observation]:
    state = port.find("state")
    if state is None or state.get("state") not in ("open", "open|filtered"):
        return
    number, transport = port.get("portid", ""), port.get("protocol", "")
    if not number.isdigit() or transport not in ("tcp", "udp"):
        return
    service = port.find("service")
    probe, protocol = probes.get((int(number), transport), ("nmap", ""))
    facts: Facts = _service_facts(service)
    for script in port.findall("script"):
        script_id = script.get("id", "")
        mapped = SCRIPT_FACTS.get(script_id, generic_facts)(script)
        if script_id in SCRIPT_PROBES and mapped:
            probe = SCRIPT_PROBES[script_id]
            protocol = protocols.get(probe, probe)
        facts.update(mapped)
    if state.get("state") == "open|filtered" and len(facts) <= 1:
        return  # UDP silence: nothing proves the service is there
    if mac:
        facts["mac"] = mac.lower()
    facts["source"] = "nmap-xml"
    yield Observation(
        probe=probe,
        protocol=protocol or _text(service.get("name") if service is not None else "") or "unknown",
        address=address,
        port=int(number),
        transport=Transport(transport),
        facts=facts,
        observed_at=observed_at,
    )


class NmapXmlImporter:
    """The ``nmap`` importer (``cybermission import nmap FILE.xml``)."""

    name: ClassVar[str] = "nmap"

    def observations(
        self,
        path: Path,
        decoders: Sequence[PassiveDecoder],
        *,
        problems: list[str] | None = None,
        conversations: list[Conversation] | None = None,
    ) -> Iterator[Observation]:
        """Every open port of the report; a report that is not whole nmap XML is refused (a
        report shows no traffic: ``conversations`` stays as it is)."""
        try:
            size = path.stat().st_size
            if size > MAX_REPORT_BYTES:
                raise ValidationError(f"{path}: {size} bytes, over {MAX_REPORT_BYTES}")
            data = path.read_bytes()
        except OSError as exc:
            raise ValidationError(f"{path}: cannot be read ({exc.strerror})") from exc
        yield from parse_nmap_report(data)
