"""Advisory matches as finding drafts: rule id ``advisory:<ICSA id>``, scored from CVSS, KEV and
the match's confidence; the evidence carries the CVE ids, CVSS, KEV flag, advisory id, what
matched and the device's address, for every export."""

from collections.abc import Iterable

from cybermission.findings.advisories.matching import AdvisoryMatch
from cybermission.findings.models import Confidence, Severity
from cybermission.findings.scoring import CONFIDENCE_FACTOR, score_finding
from cybermission.findings.service import FindingDraft
from cybermission.probes import JSONValue

ADVISORY_PROTOCOL = "advisory"
RULE_PREFIX = "advisory:"


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


def severity_of_match(score: float | None, confidence: Confidence) -> Severity:
    """The severity of an advisory match: the CVSS v3.1 rating of the CVSS base score weighted by
    how sure the match is (the score's confidence factor), so that a CVSS 9.8 matched with low
    confidence reads medium, not critical; a high-confidence match keeps the CVSS rating."""
    if score is None:
        return severity_from_cvss(None)
    return severity_from_cvss(round(score * CONFIDENCE_FACTOR[Confidence(confidence)], 1))


def advisory_drafts(
    matches: Iterable[AdvisoryMatch],
    *,
    device_id: str,
    zone_exposure: str | None,
    criticality: str | None,
    address: str | None = None,
) -> list[FindingDraft]:
    """One draft per matched advisory, its evidence carrying what matched and how sure it is."""
    drafts: list[FindingDraft] = []
    for match in matches:
        severity = severity_of_match(match.cvss_score, match.confidence)
        score, breakdown = score_finding(
            severity=severity,
            cvss=match.cvss_score,
            kev=match.kev,
            zone_exposure=zone_exposure,
            criticality=criticality,
            confidence=match.confidence,
        )
        evidence: dict[str, JSONValue] = {
            "advisory_id": match.advisory_id,
            "cves": list(match.cves),
            "cvss_score": match.cvss_score,
            "cvss_vector": match.cvss_vector,
            "kev": match.kev,
            "branch_path": list(match.branch_path),
            "product_id": match.product_id,
            "confidence": match.confidence.value,
            "confidence_reason": match.reason,
            "quote": match.quote,
            "address": address,
        }
        drafts.append(
            FindingDraft(
                rule_id=f"{RULE_PREFIX}{match.advisory_id}",
                device_id=device_id,
                service_id=None,
                port=None,
                protocol=ADVISORY_PROTOCOL,
                title=f"{match.advisory_id}: {match.title}"[:300],
                severity=severity,
                evidence=evidence,
                score=score,
                score_breakdown=breakdown,
                confidence=match.confidence,
            )
        )
    return drafts
