"""Judging: the documents rules read, and every finding draft a run makes, built one way.

Three sources judge a device: the rules over each observation, the rules over each change of the
inventory (``history`` documents, rules/README.md), and the imported advisories over its identity.
All three become :class:`FindingDraft` through :func:`_draft`, so scoring and shape never drift.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cybermission.findings.advisories.matching import AdvisoryIndex, AdvisoryMatch, DeviceIdentity
from cybermission.findings.advisories.versions import change_direction
from cybermission.findings.models import Severity
from cybermission.findings.scoring import score_finding
from cybermission.findings.service import FindingDraft
from cybermission.inventory.models import ChangeEvent, Device
from cybermission.probes import Observation
from cybermission.rules.loader import RuleSet
from cybermission.scans.placement import Placement
from cybermission.scans.probing import HostReport

ADVISORY_PROTOCOL = "advisory"
ADVISORY_RULE_PREFIX = "advisory:"

# Facts that name a device beside its inventory attributes, for advisory matching.
_NAMING_FACTS = ("product_code", "order_number", "product_name", "model", "product")


def asset_document(device: Device, placement: Placement | None) -> dict[str, Any]:
    """The ``asset`` part of every subject document: the device, its zone and criticality."""
    return {
        "id": device.id,
        "vendor": device.vendor,
        "product": device.product,
        "model": device.model,
        "firmware": device.firmware,
        "serial": device.serial,
        "zone": placement.zone if placement else None,
        "zone_exposure": placement.exposure if placement else None,
        "site": placement.site if placement else None,
        "criticality": str(device.criticality) if device.criticality else None,
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


def rule_drafts(
    rules: RuleSet, subject: Mapping[str, Any], *, device_id: str, service_id: str | None
) -> list[FindingDraft]:
    """One draft per rule the subject matches. The evidence keeps where it was seen, the fact
    values the rule read, and the ATT&CK for ICS techniques it names (alert channels pass them
    to SIEMs)."""
    target = subject["target"]
    asset = subject["asset"]
    return [
        _draft(
            rule_id=rule.id,
            title=rule.info.name,
            severity=Severity(rule.info.severity),
            device_id=device_id,
            service_id=service_id,
            port=target["port"],
            protocol=subject["protocol"],
            evidence={
                "probe": subject["probe"],
                "address": target["address"],
                "port": target["port"],
                "fields": dict(rule.evidence(subject)),
                "attack_techniques": list(rule.attack_techniques),
            },
            zone_exposure=asset["zone_exposure"],
            criticality=asset["criticality"],
        )
        for rule in rules.evaluate(subject)
    ]


def severity_from_cvss(score: float | None) -> Severity:
    """The CVSS v3.1 qualitative rating (FIRST CVSS v3.1 specification §5); medium when unscored."""
    if score is None:
        return Severity.MEDIUM
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    if score > 0.0:
        return Severity.LOW
    return Severity.INFO


def advisory_drafts(
    matches: Iterable[AdvisoryMatch],
    *,
    device_id: str,
    zone_exposure: str | None,
    criticality: str | None,
) -> list[FindingDraft]:
    """One draft per matched advisory (rule id ``advisory:<ICSA id>``), scored from CVSS and KEV,
    its evidence carrying what matched and how sure it is."""
    return [
        _draft(
            rule_id=f"{ADVISORY_RULE_PREFIX}{match.advisory_id}",
            title=f"{match.advisory_id}: {match.title}"[:300],
            severity=severity_from_cvss(match.cvss_score),
            device_id=device_id,
            service_id=None,
            port=None,
            protocol=ADVISORY_PROTOCOL,
            evidence={
                "advisory_id": match.advisory_id,
                "cves": list(match.cves),
                "cvss_score": match.cvss_score,
                "cvss_vector": match.cvss_vector,
                "kev": match.kev,
                "branch_path": list(match.branch_path),
                "product_id": match.product_id,
                "confidence": match.confidence.value,
                "confidence_reason": match.reason,
            },
            zone_exposure=zone_exposure,
            criticality=criticality,
            cvss=match.cvss_score,
            kev=match.kev,
        )
        for match in matches
    ]


def judge_device(
    rules: RuleSet,
    advisories: AdvisoryIndex | None,
    report: HostReport,
    device: Device,
    changes: Sequence[ChangeEvent],
    placement: Placement | None,
) -> list[FindingDraft]:
    """Findings beyond one observation: change events run through the rules as ``history``
    documents, and the device's identity meets the imported advisories."""
    asset = asset_document(device, placement)
    drafts: list[FindingDraft] = []
    for change in changes:
        subject = history_subject(report.address, change, asset)
        drafts.extend(rule_drafts(rules, subject, device_id=device.id, service_id=None))
    if advisories is not None and len(advisories) and device.vendor:
        names = [device.product, device.model]
        for observation in report.observations:
            names.extend(
                value
                for key in _NAMING_FACTS
                if isinstance(value := observation.facts.get(key), str)
            )
        identity = DeviceIdentity(
            vendor=device.vendor,
            firmware=device.firmware,
            names=tuple(dict.fromkeys(n for n in names if n)),
        )
        drafts.extend(
            advisory_drafts(
                advisories.match(identity),
                device_id=device.id,
                zone_exposure=asset["zone_exposure"],
                criticality=asset["criticality"],
            )
        )
    return drafts


def _draft(
    *,
    rule_id: str,
    title: str,
    severity: Severity,
    device_id: str,
    service_id: str | None,
    port: int | None,
    protocol: str,
    # Any: a rule's evidence values are the JSON facts it read (typed ``object`` by the loader).
    evidence: dict[str, Any],
    zone_exposure: str | None,
    criticality: str | None,
    cvss: float | None = None,
    kev: bool = False,
) -> FindingDraft:
    score, breakdown = score_finding(
        severity=severity,
        cvss=cvss,
        kev=kev,
        zone_exposure=zone_exposure,
        criticality=criticality,
    )
    return FindingDraft(
        rule_id=rule_id,
        device_id=device_id,
        service_id=service_id,
        port=port,
        protocol=protocol,
        title=title,
        severity=severity,
        evidence=evidence,
        score=score,
        score_breakdown=breakdown,
    )
