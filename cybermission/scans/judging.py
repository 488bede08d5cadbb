"""Judging: the documents rules read, and every finding draft a run makes, built one way.

Four sources judge a device: the rules over each observation, the rules over each change of the
inventory (``history`` documents, rules/README.md), the rules over each conversation seen in
traffic with it as the server (``traffic`` documents), and the imported advisories over its
identity (``findings/advisories/drafts.py``). Rule matches of every kind become drafts in one
function, :func:`rule_drafts`, so their scoring and evidence never drift apart.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from cybermission.findings.advisories.drafts import advisory_drafts
from cybermission.findings.advisories.matching import AdvisoryIndex, DeviceIdentity
from cybermission.findings.advisories.versions import change_direction
from cybermission.findings.models import Severity
from cybermission.findings.scoring import score_finding
from cybermission.findings.service import FindingDraft
from cybermission.inventory.communications import RecordedCommunication
from cybermission.inventory.documents import IDENTITY_FIELDS, asset_fields
from cybermission.inventory.models import ChangeEvent, Device
from cybermission.probes import Observation
from cybermission.rules.loader import RuleSet
from cybermission.scans.placement import Placement
from cybermission.scans.probing import HostReport


def asset_document(device: Device, placement: Placement | None) -> dict[str, Any]:
    """The ``asset`` part of every subject document: the device's identity and criticality (from
    the one asset document, ``inventory/documents.py``), and the zone and site it is placed in."""
    return {
        **asset_fields(device, ("id", *IDENTITY_FIELDS, "criticality")),
        "zone": placement.zone if placement else None,
        "zone_exposure": placement.exposure if placement else None,
        "site": placement.site if placement else None,
    }


def observation_subject(
    observation: Observation, device: Device, placement: Placement | None
) -> dict[str, Any]:
    """The one document every rule sees (rules/README.md)."""
    return {
        "probe": observation.probe,
        "protocol": observation.protocol,
        "target": {
            "address": observation.address,
            "port": observation.port,
            "transport": str(observation.transport),
        },
        "facts": observation.facts,
        "asset": asset_document(device, placement),
    }


def history_subject(address: str, change: ChangeEvent, asset: Mapping[str, Any]) -> dict[str, Any]:
    """The document of one inventory change (rules/README.md, History documents)."""
    return {
        "probe": "history",
        "protocol": "history",
        "target": {"address": address, "port": None, "transport": None},
        "facts": {
            "kind": str(change.kind),
            "field": change.field,
            "old": change.old_value,
            "new": change.new_value,
            "direction": change_direction(change.old_value, change.new_value)
            if change.field == "firmware"
            else None,
        },
        "asset": asset,
    }


def traffic_subject(
    recorded: RecordedCommunication, client: Placement | None, asset: Mapping[str, Any]
) -> dict[str, Any]:
    """The document of one conversation seen in traffic (rules/README.md, Traffic documents):
    the server is the target and the asset, the client and its placement are facts."""
    row = recorded.row
    server_zone = asset["zone"]
    client_zone = client.zone if client else None
    return {
        "probe": "traffic",
        "protocol": "traffic",
        "target": {"address": row.server_address, "port": row.port, "transport": row.transport},
        "facts": {
            "kind": "conversation",
            "protocol": row.protocol,
            "function": row.function,
            "client": row.client_address,
            "packets": row.packets,
            "first_time": recorded.new,
            "new_talker": recorded.new_talker,
            "client_zone": client_zone,
            "client_zone_exposure": client.exposure if client else None,
            "client_site": client.site if client else None,
            # Only when both ends are placed: an unplaced client proves no crossing.
            "crosses_zone": client_zone is not None
            and server_zone is not None
            and (client_zone, client.site if client else None) != (server_zone, asset["site"]),
        },
        "asset": asset,
    }


def rule_drafts(
    rules: RuleSet, subject: Mapping[str, Any], *, device_id: str, service_id: str | None
) -> list[FindingDraft]:
    """One draft per rule the subject matches. The evidence keeps where it was seen, the fact
    values the rule read, and the ATT&CK for ICS techniques it names (alert channels pass them
    to SIEMs), and the rule's CWE (the exports' ``cwe``, where an advisory finding has CVEs)."""
    target = subject["target"]
    asset = subject["asset"]
    drafts: list[FindingDraft] = []
    for rule in rules.evaluate(subject):
        severity = Severity(rule.info.severity)
        score, breakdown = score_finding(
            severity=severity,
            zone_exposure=asset["zone_exposure"],
            criticality=asset["criticality"],
        )
        evidence: dict[str, Any] = {
            "probe": subject["probe"],
            "address": target["address"],
            "port": target["port"],
            "fields": dict(rule.evidence(subject)),
            "attack_techniques": list(rule.attack_techniques),
            "cwe": rule.cwe,
        }
        drafts.append(
            FindingDraft(
                rule_id=rule.id,
                device_id=device_id,
                service_id=service_id,
                port=target["port"],
                protocol=subject["protocol"],
                title=rule.info.name,
                severity=severity,
                evidence=evidence,
                score=score,
                score_breakdown=breakdown,
            )
        )
    return drafts


def judge_device(
    rules: RuleSet,
    advisories: AdvisoryIndex | None,
    report: HostReport,
    device: Device,
    changes: Sequence[ChangeEvent],
    placement: Placement | None,
    identity: DeviceIdentity | None,
) -> list[FindingDraft]:
    """Findings beyond one observation: change events run through the rules as ``history``
    documents, and the device's ``identity`` (``scans/naming.py``, as the re-match after an
    import reads it) meets the imported advisories."""
    asset = asset_document(device, placement)
    drafts: list[FindingDraft] = []
    for change in changes:
        subject = history_subject(report.address, change, asset)
        drafts.extend(rule_drafts(rules, subject, device_id=device.id, service_id=None))
    if advisories is not None and len(advisories) and identity is not None:
        drafts.extend(
            advisory_drafts(
                advisories.match(identity),
                device_id=device.id,
                zone_exposure=asset["zone_exposure"],
                criticality=asset["criticality"],
                address=report.address,
            )
        )
    return drafts
