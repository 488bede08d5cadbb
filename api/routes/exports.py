"""Exports, streamed page by page (never built in memory): assets and findings as CSV or JSON,
findings as OCSF Vulnerability Finding events, the inventory as a CycloneDX document. An advisory
finding carries its advisory id, CVE ids, CVSS, KEV flag and confidence in every one of them
(OCSF ``vulnerabilities[].cve``, CycloneDX ``vulnerabilities`` affecting the device component);
a rule's finding carries its rule's CWE (CSV/JSON ``cwe``, OCSF ``vulnerabilities[].cwe``).

Each page is read in its own short transaction by keyset, so a long download neither holds a
transaction open nor loads the table; rows written meanwhile may or may not appear.

CSV cells a spreadsheet would evaluate (``=1+2``, ``@SUM(1,1)``, ``+v3``) are quote-prefixed
(:mod:`cybermission.csv_cells`, OWASP's rule); the JSON, OCSF and CycloneDX exports keep raw values.
"""

import itertools
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from api.deps import EngineDep, Reader
from api.routes.findings import FiltersDep
from cybermission import __version__
from cybermission.auth.service import Principal
from cybermission.csv_cells import csv_rows
from cybermission.db import session_scope, utcnow
from cybermission.findings.advisories.drafts import ADVISORY_PROTOCOL
from cybermission.findings.cwe import cwe_name, cwe_url
from cybermission.findings.models import Finding, FindingStatus, Severity
from cybermission.findings.payloads import advisory_fields, finding_cwe
from cybermission.inventory.documents import (
    ASSET_FIELDS,
    ASSET_TIMES,
    asset_fields,
    service_labels,
)
from cybermission.inventory.models import Device, Service
from cybermission.inventory.queries import (
    list_addresses_by_device,
    list_devices,
    list_services_by_device,
    list_units_by_gateway,
)
from cybermission.scans.placed_findings import (
    FindingFilters,
    PlacedFinding,
    list_placed_findings,
    place_findings,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/exports", tags=["exports"])

PAGE = 1000

FINDING_COLUMNS = (
    "id",
    "rule_id",
    "severity",
    "confidence",
    "score",
    "status",
    "title",
    "advisory_id",
    "cves",
    "cwe",
    "cvss_score",
    "kev",
    "device_id",
    "device_name",
    "vendor",
    "model",
    "address",
    "port",
    "protocol",
    "organization_id",
    "site_id",
    "zone_id",
    "first_seen_at",
    "last_seen_at",
)
# The asset document's fields (inventory/documents.py), addresses and services before the times.
_UNTIMED = ASSET_FIELDS[: -len(ASSET_TIMES)]
ASSET_COLUMNS = (*_UNTIMED, "addresses", "services", *ASSET_TIMES)

# OCSF 1.1.0, Vulnerability Finding (class 2002, category 2 Findings).
OCSF_VERSION = "1.1.0"
OCSF_CLASS_UID = 2002
OCSF_CATEGORY_UID = 2
OCSF_SEVERITY_ID = {
    Severity.INFO: 1,  # Informational
    Severity.LOW: 2,
    Severity.MEDIUM: 3,
    Severity.HIGH: 4,
    Severity.CRITICAL: 5,
}
# status_id: 1 New, 2 In Progress, 3 Suppressed, 4 Resolved.
OCSF_STATUS = {
    FindingStatus.OPEN: (1, "New"),
    FindingStatus.ACKNOWLEDGED: (2, "In Progress"),
    FindingStatus.RISK_ACCEPTED: (3, "Suppressed"),
    FindingStatus.FALSE_POSITIVE: (3, "Suppressed"),
    FindingStatus.RESOLVED: (4, "Resolved"),
}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- paging ------------------------------------------------------------------------------------


def _finding_pages(
    engine: Engine, caller: Principal, filters: FindingFilters
) -> Iterator[list[PlacedFinding]]:
    cursor: str | None = None
    while True:
        with session_scope(engine) as session:
            rows, cursor = list_placed_findings(
                session=session,
                visible_to=caller.organization_id,
                filters=filters,
                cursor=cursor,
                limit=PAGE,
            )
            page = place_findings(session=session, findings=rows)
        yield page
        if cursor is None:
            return


def _device_pages(
    engine: Engine, caller: Principal, *, top_level: bool = False
) -> Iterator[list[tuple[Device, list[str], list[Service]]]]:
    cursor: str | None = None
    while True:
        with session_scope(engine) as session:
            devices, cursor = list_devices(
                session=session,
                visible_to=caller.organization_id,
                top_level=top_level,
                cursor=cursor,
                limit=PAGE,
            )
            ids = [d.id for d in devices]
            addresses = list_addresses_by_device(session=session, device_ids=ids)
            services = list_services_by_device(session=session, device_ids=ids)
        yield [(d, addresses[d.id], services[d.id]) for d in devices]
        if cursor is None:
            return


# --- shapes ------------------------------------------------------------------------------------


def _finding_row(finding: Finding, device: Device, address: str | None) -> dict[str, Any]:
    advisory = advisory_fields(finding)
    return {
        "id": finding.id,
        "rule_id": finding.rule_id,
        "severity": str(finding.severity),
        "confidence": advisory["confidence"],
        "score": finding.score,
        "status": str(finding.status),
        "title": finding.title,
        "advisory_id": advisory["advisory_id"],
        "cves": advisory["cves"],
        "cwe": finding_cwe(finding),
        "cvss_score": advisory["cvss_score"],
        "kev": advisory["kev"] if advisory["advisory_id"] else None,
        "device_id": finding.device_id,
        "device_name": device.name,
        **asset_fields(device, ("vendor", "model")),
        "address": address,
        "port": finding.port,
        "protocol": finding.protocol,
        **asset_fields(device, ("organization_id", "site_id", "zone_id")),
        "first_seen_at": _iso(finding.first_seen_at),
        "last_seen_at": _iso(finding.last_seen_at),
    }


def _asset_row(device: Device, addresses: list[str], services: list[Service]) -> dict[str, Any]:
    """A device as the export writes it: the whole asset document, its addresses and open
    services inserted before the timestamps (``ASSET_COLUMNS``)."""
    return {
        **asset_fields(device, _UNTIMED, text_times=True),
        "addresses": addresses,
        "services": service_labels(services),
        **asset_fields(device, ASSET_TIMES, text_times=True),
    }


def ocsf_finding(finding: Finding, device: Device, address: str | None) -> dict[str, Any]:
    """One finding as an OCSF 1.1 Vulnerability Finding event (class_uid 2002)."""
    if finding.status is FindingStatus.RESOLVED:
        activity_id, activity = 3, "Close"
    elif finding.status is FindingStatus.OPEN and finding.first_seen_at == finding.last_seen_at:
        activity_id, activity = 1, "Create"
    else:
        activity_id, activity = 2, "Update"
    status_id, status = OCSF_STATUS[finding.status]
    evidence = finding.evidence
    references = evidence.get("references") if isinstance(evidence, dict) else None
    device_obj: dict[str, Any] = {
        "uid": device.id,
        "name": device.name or None,
        "type_id": 99,  # Other: an OT device has no closer OCSF device type
        "type": "OT device",
        "ip": address,
        # OCSF 1.1.0's device has no vendor or model member: said in words here, and as fields
        # under `unmapped` (device_vendor, device_model).
        "desc": " ".join(p for p in (device.vendor, device.model) if p) or None,
        "hw_info": {"serial_number": device.serial} if device.serial else None,
    }
    event: dict[str, Any] = {
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": OCSF_CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": OCSF_CLASS_UID,
        "class_name": "Vulnerability Finding",
        "type_uid": OCSF_CLASS_UID * 100 + activity_id,
        "type_name": f"Vulnerability Finding: {activity}",
        "time": _ms(finding.last_seen_at),
        "severity_id": OCSF_SEVERITY_ID[finding.severity],
        "severity": str(finding.severity).capitalize()
        if finding.severity is not Severity.INFO
        else "Informational",
        "status_id": status_id,
        "status": status,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "cybermission",
                "vendor_name": "cybermission",
                "version": __version__,
            },
            "uid": finding.id,
            # `device` belongs to the host profile.
            "profiles": ["host"],
        },
        "finding_info": {
            "uid": finding.id,
            "title": finding.title,
            "types": [finding.rule_id],
            "first_seen_time": _ms(finding.first_seen_at),
            "last_seen_time": _ms(finding.last_seen_at),
            "product_uid": "cybermission",
        },
        "vulnerabilities": [
            {
                "title": finding.title,
                "severity": str(finding.severity),
                "vendor_name": device.vendor,
                "first_seen_time": _ms(finding.first_seen_at),
                "last_seen_time": _ms(finding.last_seen_at),
                "references": references if isinstance(references, list) else None,
            }
        ],
        "device": {k: v for k, v in device_obj.items() if v is not None},
        # OCSF 1.1.0's Vulnerability Finding has one `resource` (Resource Details), no list.
        "resource": {"uid": device.id, "name": device.name or device.id, "type": "device"},
        "unmapped": {
            "rule_id": finding.rule_id,
            "score": finding.score,
            "score_breakdown": finding.score_breakdown,
            "port": finding.port,
            "protocol": finding.protocol,
            "site_id": device.site_id,
            "zone_id": device.zone_id,
            "device_vendor": device.vendor,
            "device_model": device.model,
        },
    }
    cwe = finding_cwe(finding)
    if cwe is not None:
        # A rule's finding names its weakness by CWE (OCSF 1.1 wants a cve or a cwe).
        event["vulnerabilities"][0]["cwe"] = _ocsf_cwe(cwe)
        event["unmapped"]["cwe"] = cwe
    advisory = advisory_fields(finding)
    if advisory["cves"]:
        # One vulnerability per CVE of the advisory, its CVSS and KEV flag with it.
        template = event["vulnerabilities"][0]
        event["vulnerabilities"] = [
            {**template, "cve": _ocsf_cve(cve, advisory), "is_exploit_available": advisory["kev"]}
            for cve in advisory["cves"]
        ]
        event["unmapped"].update(
            advisory_id=advisory["advisory_id"],
            confidence=advisory["confidence"],
            kev=advisory["kev"],
        )
    event["vulnerabilities"] = [
        {k: v for k, v in vulnerability.items() if v is not None}
        for vulnerability in event["vulnerabilities"]
    ]
    return event


def _ocsf_cwe(cwe: str) -> dict[str, Any]:
    """An OCSF cwe object: the id, MITRE's name when known, and its page."""
    found = {"uid": cwe, "caption": cwe_name(cwe), "src_url": cwe_url(cwe)}
    return {k: v for k, v in found.items() if v is not None}


def _ocsf_cve(cve: str, advisory: dict[str, Any]) -> dict[str, Any]:
    """An OCSF cve object: the id, and the advisory's CVSS base score with its version."""
    found: dict[str, Any] = {"uid": cve}
    if advisory["cvss_score"] is not None:
        vector = advisory["cvss_vector"] if isinstance(advisory["cvss_vector"], str) else None
        version = vector.split("/", 1)[0].removeprefix("CVSS:") if vector else "3.1"
        cvss: dict[str, Any] = {"base_score": advisory["cvss_score"], "version": version}
        if vector:
            cvss["vector_string"] = vector
        found["cvss"] = [cvss]
    return found


# Asset fields a CycloneDX component carries as properties (it has no field of its own for them).
_CDX_PROPERTIES = ("serial", "role", "site_id", "zone_id", "criticality", "unit_id")


def cyclonedx_component(
    device: Device, addresses: list[str], services: list[Service], children: list[Device]
) -> dict[str, Any]:
    """A device as a CycloneDX 1.6 component of type "device", firmware nested inside."""
    properties = [{"name": "cybermission:address", "value": a} for a in addresses]
    properties += [{"name": "cybermission:service", "value": s} for s in service_labels(services)]
    for key, value in asset_fields(device, _CDX_PROPERTIES).items():
        if value is not None:
            properties.append({"name": f"cybermission:{key}", "value": str(value)})
    component: dict[str, Any] = {
        "type": "device",
        "bom-ref": device.id,
        "name": device.model or device.product or device.name or device.id,
    }
    if device.vendor:
        component["manufacturer"] = {"name": device.vendor}
    if device.product and device.product != component["name"]:
        component["description"] = device.product
    nested: list[dict[str, Any]] = []
    if device.firmware:
        nested.append(
            {
                "type": "firmware",
                "bom-ref": f"{device.id}:firmware",
                "name": f"{component['name']} firmware",
                "version": device.firmware,
            }
        )
    nested += [cyclonedx_component(child, [], [], []) for child in children]
    if nested:
        component["components"] = nested
    if properties:
        component["properties"] = properties
    return component


# --- streams -----------------------------------------------------------------------------------


def _json_array(
    pages: Iterable[list[dict[str, Any]]], *, head: str = "[", tail: str = "]"
) -> Iterator[str]:
    # The head goes out with the first page, so that page is read before the status is sent.
    prefix = head
    for page in pages:
        chunk = ",".join(json.dumps(item, separators=(",", ":")) for item in page)
        if chunk:
            yield prefix + chunk
            prefix = ","
    yield (head if prefix == head else "") + tail


# The last line of an export that failed after its status was sent: a CSV reader sees a line
# no row has, a JSON parser an unterminated document; both say so in clear (api/README.md).
TRUNCATED_MARKER = (
    "\n#cybermission-export-truncated: the server met an error; data above is partial\n"
)


def _download(body: Iterator[str], media_type: str, filename: str) -> StreamingResponse:
    """Stream ``body``; its first page is read here, before the status is sent, so an error
    there is an error status, and a failure after it ends the stream with the marker."""
    first = next(body, "")
    return StreamingResponse(
        _marked(first, body, filename),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _marked(first: str, rest: Iterator[str], filename: str) -> Iterator[str]:
    yield first
    try:
        yield from rest
    except Exception:  # the status is sent: the marker is the only way left to tell the client
        logger.exception("export failed mid-stream", extra={"export": filename})
        yield TRUNCATED_MARKER


def _finding_dicts(
    engine: Engine, caller: Principal, filters: FindingFilters, shape: Callable[..., dict[str, Any]]
) -> Iterator[list[dict[str, Any]]]:
    for page in _finding_pages(engine, caller, filters):
        yield [shape(p.finding, p.device, p.address) for p in page]


def _asset_dicts(engine: Engine, caller: Principal) -> Iterator[list[dict[str, Any]]]:
    for page in _device_pages(engine, caller):
        yield [_asset_row(d, a, s) for d, a, s in page]


_CSV = {"description": "CSV with a header row", "content": {"text/csv": {}}}
_JSON = {"description": "A JSON array", "content": {"application/json": {}}}


@router.get(
    "/findings.csv",
    summary="Findings as CSV (filters as on /findings)",
    response_class=StreamingResponse,
    responses={200: _CSV},
)
def export_findings_csv(
    engine: EngineDep, caller: Reader, filters: FiltersDep
) -> StreamingResponse:
    pages = _finding_dicts(engine, caller, filters, _finding_row)
    return _download(csv_rows(FINDING_COLUMNS, pages), "text/csv", "findings.csv")


@router.get(
    "/findings.json",
    summary="Findings as a JSON array (filters as on /findings)",
    response_class=StreamingResponse,
    responses={200: _JSON},
)
def export_findings_json(
    engine: EngineDep, caller: Reader, filters: FiltersDep
) -> StreamingResponse:
    pages = _finding_dicts(engine, caller, filters, _finding_row)
    return _download(_json_array(pages), "application/json", "findings.json")


@router.get(
    "/findings.ocsf.json",
    summary="Findings as OCSF 1.1 Vulnerability Finding events (class_uid 2002), a JSON array",
    response_class=StreamingResponse,
    responses={200: _JSON},
)
def export_findings_ocsf(
    engine: EngineDep, caller: Reader, filters: FiltersDep
) -> StreamingResponse:
    pages = _finding_dicts(engine, caller, filters, ocsf_finding)
    return _download(_json_array(pages), "application/json", "findings.ocsf.json")


@router.get(
    "/assets.csv", summary="Devices as CSV", response_class=StreamingResponse, responses={200: _CSV}
)
def export_assets_csv(engine: EngineDep, caller: Reader) -> StreamingResponse:
    return _download(
        csv_rows(ASSET_COLUMNS, _asset_dicts(engine, caller)), "text/csv", "assets.csv"
    )


@router.get(
    "/assets.json",
    summary="Devices as a JSON array",
    response_class=StreamingResponse,
    responses={200: _JSON},
)
def export_assets_json(engine: EngineDep, caller: Reader) -> StreamingResponse:
    return _download(_json_array(_asset_dicts(engine, caller)), "application/json", "assets.json")


def _cyclonedx_pages(engine: Engine, caller: Principal) -> Iterator[list[dict[str, Any]]]:
    for page in _device_pages(engine, caller, top_level=True):
        with session_scope(engine) as session:
            children = list_units_by_gateway(
                session=session, gateway_ids=[d.id for d, _, _ in page]
            )
        yield [cyclonedx_component(d, a, s, children[d.id]) for d, a, s in page]


# Findings whose advisory still stands against the device: listed as CycloneDX vulnerabilities.
_STANDING = (FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED, FindingStatus.RISK_ACCEPTED)
_CDX_SEVERITY = {
    Severity.INFO: "info",
    Severity.LOW: "low",
    Severity.MEDIUM: "medium",
    Severity.HIGH: "high",
    Severity.CRITICAL: "critical",
}


def cyclonedx_vulnerabilities(finding: Finding) -> list[dict[str, Any]]:
    """An advisory finding as CycloneDX 1.6 vulnerabilities, one per CVE, each affecting the
    device's component (its bom-ref is the device id)."""
    advisory = advisory_fields(finding)
    if not advisory["cves"]:
        return []
    rating: dict[str, Any] = {"severity": _CDX_SEVERITY[finding.severity]}
    if advisory["cvss_score"] is not None:
        rating["score"] = advisory["cvss_score"]
        vector = advisory["cvss_vector"]
        if isinstance(vector, str) and vector:
            rating["vector"] = vector
            rating["method"] = "CVSSv31" if vector.startswith("CVSS:3.1") else "CVSSv3"
    properties = [
        {"name": "cybermission:finding_id", "value": finding.id},
        {"name": "cybermission:kev", "value": "true" if advisory["kev"] else "false"},
        {"name": "cybermission:status", "value": str(finding.status)},
    ]
    if advisory["confidence"]:
        properties.append({"name": "cybermission:confidence", "value": advisory["confidence"]})
    found: list[dict[str, Any]] = []
    for cve in advisory["cves"]:
        vulnerability: dict[str, Any] = {
            "bom-ref": f"{finding.id}:{cve}",
            "id": cve,
            "source": {"name": "NVD", "url": f"https://nvd.nist.gov/vuln/detail/{cve}"},
            "ratings": [rating],
            "affects": [{"ref": finding.device_id}],
            "properties": properties,
        }
        if advisory["advisory_id"]:
            vulnerability["advisories"] = [
                {
                    "title": advisory["advisory_id"],
                    "url": "https://www.cisa.gov/news-events/ics-advisories/"
                    + str(advisory["advisory_id"]).casefold(),
                }
            ]
        found.append(vulnerability)
    return found


def _cyclonedx_vulnerability_pages(
    engine: Engine, caller: Principal
) -> Iterator[list[dict[str, Any]]]:
    filters = FindingFilters(protocol=ADVISORY_PROTOCOL, status=_STANDING)
    for page in _finding_pages(engine, caller, filters):
        yield [v for placed in page for v in cyclonedx_vulnerabilities(placed.finding)]


@router.get(
    "/inventory.cdx.json",
    summary="The inventory as a CycloneDX 1.6 JSON document (devices, nested firmware, and the "
    "CVEs of the advisories that affect them)",
    response_class=StreamingResponse,
    responses={
        200: {"description": "CycloneDX 1.6", "content": {"application/vnd.cyclonedx+json": {}}}
    },
)
def export_cyclonedx(engine: EngineDep, caller: Reader) -> StreamingResponse:
    header = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": utcnow().isoformat(),
            "tools": {
                "components": [
                    {"type": "application", "name": "cybermission", "version": __version__}
                ]
            },
        },
    }
    head = json.dumps(header, separators=(",", ":"))[:-1] + ',"components":['
    body = itertools.chain(
        _json_array(_cyclonedx_pages(engine, caller), head=head, tail="]"),
        _json_array(
            _cyclonedx_vulnerability_pages(engine, caller), head=',"vulnerabilities":[', tail="]}"
        ),
    )
    return _download(body, "application/vnd.cyclonedx+json; version=1.6", "inventory.cdx.json")
