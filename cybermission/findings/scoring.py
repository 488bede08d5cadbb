"""The finding score: one transparent formula, its breakdown stored beside the number.

::

    score = min(10, round(base * exploitation * exposure * criticality * confidence, 1))

- **base** (0-10): the CVSS base score when an advisory gives one, else the rule's severity:
  info 1.0, low 3.0, medium 5.0, high 7.5, critical 9.5 (each inside its CVSS v3.1 qualitative
  band, FIRST CVSS v3.1 specification §5, so a rule and an advisory grade on one scale).
- **exploitation**: x1.3 when the weakness is in CISA's Known Exploited Vulnerabilities catalogue,
  else x1.0.
- **exposure** of the device's zone: internet x1.5, enterprise x1.25, dmz x1.2, control x1.0,
  isolated x0.8; unknown or unset x1.0.
- **criticality** of the asset: critical x1.3, high x1.15, medium x1.0, low x0.85; unset x1.0.
- **confidence** that the condition holds (advisory matches, findings/advisories/confidence.py):
  high x1.0, medium x0.85, low x0.5; rules observe what they report: x1.0. A low-confidence
  match of a critical CVSS then ranks as a medium, not as a certain critical.

Every factor is >= 0 and each input only moves the score one way, so the score is monotonic: a
worse severity, a higher CVSS, KEV, a more exposed zone, a more critical asset or a surer match
never lowers it.

The **decision** follows the spirit of CISA's SSVC deployer tree (Track / Attend / Act):

- ``act``: score >= 9.0, or a KEV weakness on an internet- or enterprise-exposed device (not on
  a low-confidence match: that one is attended first, to confirm it);
- ``attend``: score >= 7.0, or any KEV weakness;
- ``track``: everything else.
"""

import functools
from typing import Final

from cybermission.errors import ValidationError
from cybermission.findings.models import Confidence, Severity
from cybermission.probes import JSONValue

FORMULA: Final = "min(10, round(base * exploitation * exposure * criticality * confidence, 1))"

SEVERITY_BASE: Final[dict[Severity, float]] = {
    Severity.INFO: 1.0,
    Severity.LOW: 3.0,
    Severity.MEDIUM: 5.0,
    Severity.HIGH: 7.5,
    Severity.CRITICAL: 9.5,
}
KEV_FACTOR: Final = 1.3
ZONE_EXPOSURE_FACTOR: Final[dict[str, float]] = {
    "internet": 1.5,
    "enterprise": 1.25,
    "dmz": 1.2,
    "control": 1.0,
    "isolated": 0.8,
}
CRITICALITY_FACTOR: Final[dict[str, float]] = {
    "critical": 1.3,
    "high": 1.15,
    "medium": 1.0,
    "low": 0.85,
}
CONFIDENCE_FACTOR: Final[dict[Confidence, float]] = {
    Confidence.HIGH: 1.0,
    Confidence.MEDIUM: 0.85,
    Confidence.LOW: 0.5,
}
ACT_SCORE: Final = 9.0
ATTEND_SCORE: Final = 7.0
# Zones from which an exploited weakness is reachable by more than the control network.
EXPOSED_ZONES: Final = frozenset({"internet", "enterprise"})


def _factor(name: str, value: float, reason: str) -> dict[str, JSONValue]:
    return {"name": name, "value": value, "reason": reason}


def score_finding(
    *,
    severity: Severity,
    cvss: float | None = None,
    kev: bool = False,
    zone_exposure: str | None = None,
    criticality: str | None = None,
    confidence: Confidence | None = None,
) -> tuple[float, dict[str, JSONValue]]:
    """The 0-10 score of a finding and its breakdown (formula in the module docstring).

    The breakdown is shared by every finding scored from the same inputs: never change it in
    place (JSON columns are assigned whole anyway). A scan scores thousands of findings from a
    handful of input sets; each breakdown cost more to build than its finding's row (issue 12),
    and a shared one is encoded once per INSERT (``cybermission.db.json_text``).
    """
    return _scored(severity, cvss, kev, zone_exposure, criticality, confidence)


# typed: 7 and 7.0 are one key untyped, but the breakdown's reason writes them apart.
@functools.lru_cache(maxsize=1024, typed=True)
def _scored(
    severity: Severity,
    cvss: float | None,
    kev: bool,
    zone_exposure: str | None,
    criticality: str | None,
    confidence: Confidence | None,
) -> tuple[float, dict[str, JSONValue]]:
    if cvss is not None:
        if not 0.0 <= cvss <= 10.0:
            raise ValidationError(f"cvss: expected a CVSS base score from 0 to 10, got {cvss}")
        base, base_reason, base_source = float(cvss), f"CVSS base score {cvss}", "cvss"
    else:
        severity = Severity(severity)
        base = SEVERITY_BASE[severity]
        base_reason, base_source = f"rule severity {severity.value}", "severity"

    exploitation = KEV_FACTOR if kev else 1.0
    exploitation_reason = (
        "in CISA Known Exploited Vulnerabilities: exploited in the wild"
        if kev
        else "no known exploitation"
    )

    zone = zone_exposure.strip().lower() if zone_exposure else None
    if zone is None:
        exposure, exposure_reason = 1.0, "zone exposure unknown: neutral"
    elif zone in ZONE_EXPOSURE_FACTOR:
        exposure, exposure_reason = ZONE_EXPOSURE_FACTOR[zone], f"device in the {zone} zone"
    else:
        exposure, exposure_reason = 1.0, f"zone exposure {zone!r} not graded: neutral"

    level = criticality.strip().lower() if criticality else None
    if level is None:
        weight, weight_reason = 1.0, "asset criticality unknown: neutral"
    elif level in CRITICALITY_FACTOR:
        weight, weight_reason = CRITICALITY_FACTOR[level], f"asset criticality {level}"
    else:
        weight, weight_reason = 1.0, f"asset criticality {level!r} not graded: neutral"

    if confidence is None:
        sureness, sureness_reason = 1.0, "observed by a rule"
    else:
        confidence = Confidence(confidence)
        sureness = CONFIDENCE_FACTOR[confidence]
        sureness_reason = f"{confidence.value} confidence match"

    raw = base * exploitation * exposure * weight * sureness
    score = min(10.0, round(raw, 1))

    if score >= ACT_SCORE or (kev and zone in EXPOSED_ZONES and confidence != Confidence.LOW):
        decision = "act"
        decision_reason = (
            f"score {score} >= {ACT_SCORE}"
            if score >= ACT_SCORE
            else f"exploited weakness on a device reachable from the {zone} zone"
        )
    elif score >= ATTEND_SCORE or kev:
        decision = "attend"
        decision_reason = f"score {score} >= {ATTEND_SCORE}" if score >= ATTEND_SCORE else "KEV"
    else:
        decision, decision_reason = "track", f"score {score} < {ATTEND_SCORE}, not exploited"

    breakdown: dict[str, JSONValue] = {
        "formula": FORMULA,
        "base": {"source": base_source, "value": base, "reason": base_reason},
        "factors": [
            _factor("exploitation", exploitation, exploitation_reason),
            _factor("exposure", exposure, exposure_reason),
            _factor("criticality", weight, weight_reason),
            _factor("confidence", sureness, sureness_reason),
        ],
        "raw": round(raw, 4),
        "capped": raw > 10.0,
        "score": score,
        "decision": decision,
        "decision_reason": decision_reason,
    }
    return score, breakdown
