"""One event as one ArcSight CEF:0 line, the message the syslog channel carries.

Field names follow the CEF key dictionary ("Implementing ArcSight Common Event Format",
"Extension Dictionary"). Whatever device or network an event is about is the *destination*:
``dst`` for an IPv4 address (the dictionary types it IPv4), ``dhost`` otherwise. The asset's own
id is ours, not the reporting device's: it goes to ``flexString2`` (label ``assetId``), never to
``deviceExternalId``, which names the device that *sent* the event (cybermission itself).
"""

from collections.abc import Mapping
from ipaddress import IPv4Address, ip_address
from typing import Any

from cybermission import __version__
from cybermission.events import FINDING_EVENT_KINDS, Event, EventKind

# CEF severity is 0-10 (Implementing ArcSight CEF, "Header Information": 0-3 low, 4-6 medium,
# 7-8 high, 9-10 very high).
CEF_SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
# Events without a severity of their own.
CEF_KIND_SEVERITY = {"scan.failed": 7, "service.opened": 4, "asset.changed": 4}
# A scan's targets in cs6 (scan events carry no CVEs): bounded like any extension value.
MAX_TARGETS_CHARS = 1000


def _cef_header(value: object) -> str:
    # CEF header fields escape backslash and pipe ("Character Encoding" section of the spec).
    return (
        str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    )


def _cef_value(value: object) -> str:
    # Extension values escape backslash, equals and line breaks (same section).
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("=", "\\=")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def _techniques(payload: Mapping[str, Any]) -> str | None:
    raw = payload.get("attack_techniques", payload.get("attack"))
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and raw:
        return ",".join(str(t) for t in raw)
    return None


def _event_name(event: Event) -> str:
    payload = event.payload
    if event.kind in FINDING_EVENT_KINDS:
        title = str(payload.get("title") or payload.get("rule_id") or event.kind)
        # A change of state says which: "finding.resolved: Modbus reachable".
        return title if event.kind == EventKind.FINDING_CREATED else f"{event.kind}: {title}"
    if event.kind.startswith("asset.") or event.kind.startswith("service."):
        what = " ".join(str(payload[k]) for k in ("vendor", "model") if payload.get(k))
        field = f" {payload['field']}" if payload.get("field") else ""
        return f"{event.kind}{field}: {what or payload.get('device_id', '')}".strip()
    return f"{event.kind}: {payload.get('status', '')}".strip()


def _address_field(address: str) -> tuple[str, str]:
    try:
        is_v4 = isinstance(ip_address(address), IPv4Address)
    except ValueError:
        is_v4 = False
    # dst is IPv4 only in the CEF dictionary; an IPv6 address or a name goes to dhost.
    return ("dst" if is_v4 else "dhost", address)


def _destination(event: Event) -> list[tuple[str, object]]:
    """What the event is about, on the network: the asset's address (findings, asset and service
    events), or a scan's one target when it is a single host; a scan's targets also in cs6."""
    payload = event.payload
    address = payload.get("address")
    if isinstance(address, str) and address:
        return [_address_field(address)]
    targets = payload.get("targets")
    if not event.kind.startswith("scan.") or not isinstance(targets, list) or not targets:
        return []
    fields: list[tuple[str, object]] = []
    if len(targets) == 1 and isinstance(targets[0], str) and "/" not in targets[0]:
        fields.append(_address_field(targets[0]))
    listed = ",".join(str(t) for t in targets)[:MAX_TARGETS_CHARS]
    return [*fields, ("cs6Label", "scanTargets"), ("cs6", listed)]


def format_cef(event: Event, *, idempotency_key: str) -> str:
    """One CEF:0 line: header, then the extension a SIEM maps (destination, rule, score, ...)."""
    payload = event.payload
    is_finding = event.kind in FINDING_EVENT_KINDS
    signature = payload.get("rule_id") if is_finding and payload.get("rule_id") else event.kind
    severity = CEF_SEVERITY.get(event.severity or "", CEF_KIND_SEVERITY.get(event.kind, 3))
    ext: list[tuple[str, object]] = [
        ("rt", int(event.at.timestamp() * 1000)),
        ("cat", event.kind),
        ("externalId", event.id),
    ]
    ext += _destination(event)
    if payload.get("port") is not None:
        ext.append(("dpt", payload["port"]))
    if payload.get("protocol"):
        ext.append(("app", payload["protocol"]))
    if payload.get("device_id"):
        ext += [("flexString2Label", "assetId"), ("flexString2", payload["device_id"])]
    if is_finding:
        ext += [("cs1Label", "rule"), ("cs1", payload.get("rule_id", ""))]
        if payload.get("score") is not None:
            ext += [("cfp1Label", "score"), ("cfp1", payload["score"])]
        cves = payload.get("cves")
        if isinstance(cves, list) and cves:
            # The advisory's CVE ids, CVSS base score and KEV flag (findings/payloads.py).
            ext += [("cs6Label", "cve"), ("cs6", ",".join(str(c) for c in cves))]
            if payload.get("cvss_score") is not None:
                ext += [("cfp2Label", "cvss"), ("cfp2", payload["cvss_score"])]
            ext += [("cn1Label", "kev"), ("cn1", 1 if payload.get("kev") else 0)]
            if payload.get("advisory_id"):
                ext += [("flexString1Label", "advisory"), ("flexString1", payload["advisory_id"])]
        elif isinstance(payload.get("cwe"), str) and payload["cwe"]:
            # A rule's finding has no CVE: cs6 names its weakness by CWE instead.
            ext += [("cs6Label", "cwe"), ("cs6", payload["cwe"])]
    technique = _techniques(payload)
    if technique:
        ext += [("cs2Label", "attackForIcsTechnique"), ("cs2", technique)]
    if event.organization_id:
        ext += [("cs3Label", "organization"), ("cs3", event.organization_id)]
    if event.site_id:
        ext += [("cs4Label", "site"), ("cs4", event.site_id)]
    ext += [("cs5Label", "idempotencyKey"), ("cs5", idempotency_key)]
    ext.append(("msg", _event_name(event)))
    header = "|".join(
        _cef_header(v)
        for v in (
            "CEF:0",
            "cybermission",
            "cybermission",
            __version__,
            signature,
            _event_name(event),
            severity,
        )
    )
    return header + "|" + " ".join(f"{k}={_cef_value(v)}" for k, v in ext)
