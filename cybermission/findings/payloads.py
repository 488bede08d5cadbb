"""What a finding says outside the product: the fields of its events (alerts, webhooks, CEF) and
of its exports, one home so that the CVE ids, CVSS, KEV flag and advisory id of an advisory
finding, and the CWE of a rule's finding, go everywhere."""

from typing import Any

from cybermission.findings.cwe import CWE_RE
from cybermission.findings.models import Finding


def advisory_fields(finding: Finding) -> dict[str, Any]:
    """The advisory a finding comes from: id, CVE ids, CVSS, KEV flag and match confidence
    (empty values for a rule's finding)."""
    evidence = finding.evidence if isinstance(finding.evidence, dict) else {}
    cves = evidence.get("cves")
    score = evidence.get("cvss_score")
    return {
        "advisory_id": evidence.get("advisory_id"),
        "cves": [c for c in cves if isinstance(c, str)] if isinstance(cves, list) else [],
        "cvss_score": score if isinstance(score, int | float) else None,
        "cvss_vector": evidence.get("cvss_vector"),
        "kev": bool(evidence.get("kev")),
        "confidence": str(finding.confidence) if finding.confidence else None,
    }


def finding_cwe(finding: Finding) -> str | None:
    """The CWE id of a rule's finding (its rule's ``info.cwe``); None for advisory findings,
    whose weakness is named by their CVEs, and for findings judged before rules had one."""
    evidence = finding.evidence if isinstance(finding.evidence, dict) else {}
    cwe = evidence.get("cwe")
    return cwe if isinstance(cwe, str) and CWE_RE.match(cwe) else None


def finding_payload(finding: Finding) -> dict[str, Any]:
    """What every event of a finding carries about it (created and each change of state:
    ``cybermission/findings/events.py`` adds who changed it, from what, and why)."""
    techniques = finding.evidence.get("attack_techniques", [])
    return {
        "finding_id": finding.id,
        "status": str(finding.status),
        "rule_id": finding.rule_id,
        "title": finding.title,
        "device_id": finding.device_id,
        "port": finding.port,
        "protocol": finding.protocol,
        "score": finding.score,
        "address": finding.evidence.get("address"),
        "attack_techniques": list(techniques) if isinstance(techniques, list) else [],
        "cwe": finding_cwe(finding),
        **advisory_fields(finding),
    }
