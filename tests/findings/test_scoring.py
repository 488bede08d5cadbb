"""The score formula: bounded, monotonic in every input, and explained by its breakdown."""

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cybermission.errors import ValidationError
from cybermission.findings.advisories.drafts import severity_of_match
from cybermission.findings.models import Confidence, Severity
from cybermission.findings.scoring import (
    CONFIDENCE_FACTOR,
    CRITICALITY_FACTOR,
    SEVERITY_BASE,
    ZONE_EXPOSURE_FACTOR,
    score_finding,
)

SEVERITIES = list(Severity)
# Each list is ordered from least to most worrying.
ZONES = sorted(ZONE_EXPOSURE_FACTOR, key=ZONE_EXPOSURE_FACTOR.__getitem__)
LEVELS = sorted(CRITICALITY_FACTOR, key=CRITICALITY_FACTOR.__getitem__)
SURENESS = sorted(CONFIDENCE_FACTOR, key=CONFIDENCE_FACTOR.__getitem__)

inputs = st.fixed_dictionaries(
    {
        "severity": st.sampled_from(SEVERITIES),
        "cvss": st.none() | st.floats(min_value=0.0, max_value=10.0),
        "kev": st.booleans(),
        "zone_exposure": st.none() | st.sampled_from(ZONES),
        "criticality": st.none() | st.sampled_from(LEVELS),
        "confidence": st.none() | st.sampled_from(SURENESS),
    }
)


def worse(values: list[Any], current: Any) -> list[Any]:
    return values[values.index(current) + 1 :]


@given(inputs)
def test_scoring_is_bounded_and_explained_by_its_breakdown(kwargs: dict[str, Any]) -> None:
    score, breakdown = score_finding(**kwargs)
    explained: Any = breakdown  # JSON: walked by key below
    assert 0.0 <= score <= 10.0
    product = explained["base"]["value"]
    for factor in explained["factors"]:
        assert factor["reason"]
        product *= factor["value"]
    names = [f["name"] for f in explained["factors"]]
    assert names == ["exploitation", "exposure", "criticality", "confidence"]
    assert math.isclose(explained["raw"], product, abs_tol=1e-4)
    assert score == min(10.0, round(product, 1)) == breakdown["score"]
    assert breakdown["decision"] in {"act", "attend", "track"}


@given(inputs, st.data())
def test_scoring_is_monotonic_in_every_input(kwargs: dict[str, Any], data: st.DataObject) -> None:
    score, _ = score_finding(**kwargs)
    changes: list[dict[str, Any]] = [{"kev": True}]
    if kwargs["cvss"] is None:
        changes += [{"severity": s} for s in worse(SEVERITIES, kwargs["severity"])]
    else:
        changes.append({"cvss": data.draw(st.floats(min_value=kwargs["cvss"], max_value=10.0))})
    if kwargs["zone_exposure"] is not None:
        changes += [{"zone_exposure": z} for z in worse(ZONES, kwargs["zone_exposure"])]
    if kwargs["criticality"] is not None:
        changes += [{"criticality": c} for c in worse(LEVELS, kwargs["criticality"])]
    if kwargs["confidence"] is not None:
        changes += [{"confidence": c} for c in worse(SURENESS, kwargs["confidence"])]
    for change in changes:
        assert score_finding(**{**kwargs, **change})[0] >= score, change


def test_scoring_base_comes_from_cvss_before_severity() -> None:
    score, breakdown = score_finding(severity=Severity.LOW, cvss=9.8)
    assert score == 9.8
    assert breakdown["base"] == {"source": "cvss", "value": 9.8, "reason": "CVSS base score 9.8"}
    score, breakdown = score_finding(severity=Severity.HIGH)
    assert score == SEVERITY_BASE[Severity.HIGH]
    assert breakdown["base"] == {"source": "severity", "value": 7.5, "reason": "rule severity high"}


def test_scoring_caps_at_ten() -> None:
    score, breakdown = score_finding(
        severity=Severity.CRITICAL, kev=True, zone_exposure="internet", criticality="critical"
    )
    assert score == 10.0
    assert breakdown["capped"] is True


@pytest.mark.parametrize(
    ("kwargs", "decision"),
    [
        ({"severity": Severity.CRITICAL}, "act"),
        ({"severity": Severity.MEDIUM, "kev": True, "zone_exposure": "enterprise"}, "act"),
        ({"severity": Severity.HIGH}, "attend"),
        ({"severity": Severity.LOW, "kev": True, "zone_exposure": "control"}, "attend"),
        ({"severity": Severity.MEDIUM, "zone_exposure": "isolated"}, "track"),
        ({"severity": Severity.INFO, "criticality": "critical"}, "track"),
    ],
)
def test_scoring_decision(kwargs: dict[str, Any], decision: str) -> None:
    assert score_finding(**kwargs)[1]["decision"] == decision


def test_scoring_unknown_grades_are_neutral_and_say_so() -> None:
    plain, _ = score_finding(severity=Severity.MEDIUM)
    score, breakdown = score_finding(
        severity=Severity.MEDIUM, zone_exposure="moon", criticality="extreme"
    )
    explained: Any = breakdown
    assert score == plain
    reasons = [f["reason"] for f in explained["factors"]]
    assert "zone exposure 'moon' not graded: neutral" in reasons
    assert "asset criticality 'extreme' not graded: neutral" in reasons


@pytest.mark.parametrize("cvss", [-0.1, 10.1, math.nan])
def test_scoring_rejects_cvss_out_of_range(cvss: float) -> None:
    with pytest.raises(ValidationError, match="cvss"):
        score_finding(severity=Severity.LOW, cvss=cvss)


def test_scoring_a_low_confidence_match_is_not_a_certain_critical() -> None:
    certain, _ = score_finding(severity=Severity.CRITICAL, cvss=9.8, confidence=Confidence.HIGH)
    unsure, breakdown = score_finding(
        severity=Severity.CRITICAL,
        cvss=9.8,
        kev=True,
        zone_exposure="enterprise",
        confidence=Confidence.LOW,
    )
    alone, _ = score_finding(severity=Severity.CRITICAL, cvss=9.8, confidence=Confidence.LOW)
    assert certain == 9.8
    assert alone == 4.9  # a CVSS 9.8 matched with low confidence ranks as a medium
    assert unsure < 9.0  # even exploited and exposed: confirm it first
    assert breakdown["decision"] == "attend"


@pytest.mark.parametrize(
    ("cvss", "confidence", "severity"),
    [
        (9.8, Confidence.HIGH, Severity.CRITICAL),
        (9.8, Confidence.MEDIUM, Severity.HIGH),  # 8.3
        (9.8, Confidence.LOW, Severity.MEDIUM),  # 4.9: a low-confidence match is no critical
        (7.5, Confidence.LOW, Severity.LOW),  # 3.8
        (None, Confidence.LOW, Severity.MEDIUM),  # unscored: medium, as before
    ],
)
def test_scoring_advisory_severity_follows_the_match_confidence(
    cvss: float | None, confidence: Confidence, severity: Severity
) -> None:
    assert severity_of_match(cvss, confidence) is severity


def test_scoring_same_inputs_share_one_breakdown() -> None:
    """Scored once per set of inputs (issue 12): the same breakdown object, which INSERTs then
    encode once; other inputs get their own."""
    score, breakdown = score_finding(severity=Severity.HIGH, zone_exposure="control")
    again = score_finding(severity=Severity.HIGH, zone_exposure="control")
    assert again == (score, breakdown)
    assert again[1] is breakdown
    assert score_finding(severity=Severity.HIGH, zone_exposure="dmz")[1] is not breakdown


def test_scoring_cvss_written_as_given_whichever_came_first() -> None:
    """7 and 7.0 are equal keys to a plain cache; the breakdown writes the score as given."""
    integer = score_finding(severity=Severity.HIGH, cvss=7)[1]["base"]
    decimal = score_finding(severity=Severity.HIGH, cvss=7.0)[1]["base"]
    assert isinstance(integer, dict)
    assert isinstance(decimal, dict)
    assert (integer["reason"], decimal["reason"]) == ("CVSS base score 7", "CVSS base score 7.0")
