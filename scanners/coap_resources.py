"""What CoAP resources hold: resource lists, LwM2M Device objects and device-information documents.

CoRE Link Format (RFC 6690 §2), LwM2M TLV (OMA-TS-LightweightM2M V1.0 §6.4.3, Device object 3),
JSON, SenML (RFC 8428) and ``key: value`` text; every count and string is bounded.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from cybermission.errors import ProbeProtocolError
from cybermission.probes import Facts, JSONValue
from scanners.text import device_text

FORMAT_TEXT = 0
FORMAT_LINK = 40
FORMAT_JSON = 50
FORMAT_SENML_JSON = 110
FORMAT_LWM2M_TLV = 11542

MAX_LINK_FORMAT_BYTES = 8192
MAX_LINKS_PARSED = 256
MAX_LINKS = 64
MAX_ATTRS = 16
MAX_ATTR_BYTES = 256
MAX_INFO_FIELDS = 32
MAX_TLV_ENTRIES = 64

# LwM2M Device object (3) resource ids (OMA-TS-LightweightM2M V1.0 Appendix E.4) -> names.
LWM2M_DEVICE: Mapping[int, str] = {
    0: "manufacturer",
    1: "model",
    2: "serial",
    3: "firmware",
    17: "device_type",
    18: "hardware_version",
    19: "software_version",
}
# Field names devices use in a device-info resource -> fact names.
INFO_KEYS: Mapping[str, str] = {
    "manufacturer": "vendor",
    "mfr": "vendor",
    "vendor": "vendor",
    "model": "model",
    "modelnumber": "model",
    "model_number": "model",
    "firmware": "firmware",
    "fw": "firmware",
    "firmware_version": "firmware",
    "fwversion": "firmware",
    "serial": "serial",
    "serialnumber": "serial",
    "serial_number": "serial",
    "sn": "serial",
    "hardware": "hardware_version",
    "hardware_version": "hardware_version",
    "hw": "hardware_version",
    "device_type": "device_type",
    "devicetype": "device_type",
    "type": "device_type",
}


def _bounded(text: str) -> str:
    return device_text(text.encode("utf-8", "replace"), max_bytes=MAX_ATTR_BYTES)


@dataclass(slots=True)
class Link:
    """One link of a CoRE Link Format document (RFC 6690 §2)."""

    target: str
    attributes: dict[str, str] = field(default_factory=dict)


def parse_link_format(text: str) -> list[Link]:
    """Links of a CoRE Link Format document (RFC 6690 §2), counts and lengths bounded."""
    if len(text) > MAX_LINK_FORMAT_BYTES:
        # Read what fits: the links before the last separator inside the bound.
        text = text[:MAX_LINK_FORMAT_BYTES]
        text = text[: max(text.rfind(",<"), 0)]
    links: list[Link] = []
    index, size = 0, len(text)
    while index < size and len(links) < MAX_LINKS_PARSED:
        while index < size and text[index] in " \t\r\n":
            index += 1
        if index >= size:
            break
        if text[index] != "<":
            raise ProbeProtocolError("link-value does not start with <")
        close = text.find(">", index)
        if close < 0:
            raise ProbeProtocolError("link target is not closed by >")
        link = Link(_bounded(text[index + 1 : close]))
        index = close + 1
        while index < size and text[index] == ";":
            index += 1
            start = index
            while index < size and text[index] not in "=;,":
                index += 1
            name = text[start:index].strip().lower()
            value = ""
            if index < size and text[index] == "=":
                index += 1
                if index < size and text[index] == '"':
                    # quoted-string (RFC 2616 §2.2): backslash escapes one character.
                    index += 1
                    chars: list[str] = []
                    while index < size and text[index] != '"':
                        if text[index] == "\\" and index + 1 < size:
                            index += 1
                        if len(chars) < MAX_ATTR_BYTES:
                            chars.append(text[index])
                        index += 1
                    if index >= size:
                        raise ProbeProtocolError("quoted link attribute is not closed")
                    index += 1
                    value = "".join(chars)
                else:
                    start = index
                    while index < size and text[index] not in ";,":
                        index += 1
                    value = text[start:index]
            if name and len(link.attributes) < MAX_ATTRS:
                key = _bounded(name)
                # Repeated attributes (several rt values) are joined, as RFC 6690 §3.1 allows.
                joined = f"{link.attributes[key]} {value}" if key in link.attributes else value
                link.attributes[key] = _bounded(joined)
        links.append(link)
        while index < size and text[index] in " \t\r\n":
            index += 1
        if index < size:
            if text[index] != ",":
                raise ProbeProtocolError("link-values are not separated by ,")
            index += 1
    return links


def link_path(target: str) -> str:
    """The path of a link target: ``coap://host:port/a/b`` and ``/a/b/`` both give ``/a/b``."""
    if "://" in target:
        rest = target.split("://", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    path = target.split("?", 1)[0]
    return path.rstrip("/") or "/"


def resources_facts(links: list[Link]) -> Facts:
    """``resources``, ``resource_count``, ``resource_types``, ``lwm2m`` of a link list."""
    resources: list[JSONValue] = []
    types: set[str] = set()
    lwm2m = False
    for link in links:
        path = link_path(link.target)
        if path.split("/")[1:2] and path.split("/")[1].isdigit():
            lwm2m = True  # LwM2M objects are numeric paths (/3/0, /1/0...)
        entry: dict[str, JSONValue] = {"path": path}
        for key in ("rt", "if", "ct", "title"):
            if key in link.attributes:
                entry[key] = link.attributes[key]
        if "obs" in link.attributes:
            entry["obs"] = True
        types.update(t for t in link.attributes.get("rt", "").split() if t)
        if len(resources) < MAX_LINKS:
            resources.append(entry)
    return {
        "resources": resources,
        "resource_count": len(links),
        "resource_types": list[JSONValue](sorted(types)[:MAX_LINKS]),
        "resources_truncated": len(links) > MAX_LINKS,
        "lwm2m": lwm2m,
    }


def decode_tlv(data: bytes, *, depth: int = 0) -> dict[int, bytes]:
    """Resource id -> value of an LwM2M TLV document (§6.4.3); object instances are entered."""
    values: dict[int, bytes] = {}
    offset, count = 0, 0
    while offset < len(data):
        count += 1
        if count > MAX_TLV_ENTRIES:
            raise ProbeProtocolError(f"more than {MAX_TLV_ENTRIES} TLV entries")
        kind = data[offset]
        offset += 1
        id_length = 2 if kind & 0x20 else 1
        length_type = (kind >> 3) & 0x03
        if offset + id_length + length_type > len(data):
            raise ProbeProtocolError("TLV header is truncated")
        identifier = int.from_bytes(data[offset : offset + id_length], "big")
        offset += id_length
        if length_type:
            length = int.from_bytes(data[offset : offset + length_type], "big")
            offset += length_type
        else:
            length = kind & 0x07
        if offset + length > len(data):
            raise ProbeProtocolError("TLV value is truncated")
        value = data[offset : offset + length]
        offset += length
        identifier_type = kind >> 6
        if identifier_type == 0b00 and depth == 0:  # object instance: its resources
            for key, inner in decode_tlv(value, depth=1).items():
                values.setdefault(key, inner)
        elif identifier_type == 0b11:  # resource with value
            values.setdefault(identifier, value)
    return values


def device_info(payload: bytes, content_format: int | None) -> dict[str, str]:
    """Name -> text of a device-information resource (TLV, SenML JSON, JSON or text)."""
    info: dict[str, str] = {}
    if content_format == FORMAT_LWM2M_TLV:
        for resource, value in decode_tlv(payload).items():
            text = device_text(value, max_bytes=MAX_ATTR_BYTES)
            if resource in LWM2M_DEVICE and text:
                info[LWM2M_DEVICE[resource]] = text
        return info
    if content_format in (FORMAT_JSON, FORMAT_SENML_JSON) or payload[:1] in (b"{", b"["):
        try:
            document = json.loads(payload[:MAX_LINK_FORMAT_BYTES].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ProbeProtocolError("device resource is not JSON") from exc
        if isinstance(document, dict):
            pairs = list(document.items())[:MAX_INFO_FIELDS]
        elif isinstance(document, list):  # SenML records (RFC 8428): name and string value
            pairs = [
                (str(r.get("n", "")).rstrip("/").rsplit("/", 1)[-1], r.get("vs"))
                for r in document[:MAX_INFO_FIELDS]
                if isinstance(r, dict)
            ]
            pairs = [
                (
                    LWM2M_DEVICE.get(int(k), k)
                    if k.isascii() and k.isdigit() and len(k) < 6
                    else k,
                    v,
                )
                for k, v in pairs
            ]
        else:
            return info
        for key, value in pairs:
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                name, text = _bounded(str(key)), _bounded(str(value))
                if name and text:
                    info[name] = text
        return info
    for line in payload[:MAX_LINK_FORMAT_BYTES].splitlines()[:MAX_INFO_FIELDS]:
        for separator in (b":", b"="):
            key, found, value = line.partition(separator)
            if found:
                name = device_text(key, max_bytes=MAX_ATTR_BYTES)
                text = device_text(value, max_bytes=MAX_ATTR_BYTES)
                if name and text:
                    info[name] = text
                break
    return info


def info_facts(info: Mapping[str, str]) -> Facts:
    """Identity facts from a device-information resource's fields."""
    facts: Facts = {}
    for key, value in info.items():
        fact = INFO_KEYS.get(key.lower().replace("-", "_").replace(" ", "_"))
        if fact is None:
            fact = INFO_KEYS.get(key.lower().replace("-", "").replace(" ", "").replace("_", ""))
        if fact is not None and fact not in facts:
            facts[fact] = value
    if "model" in facts:
        facts["product"] = facts["model"]
    return facts
