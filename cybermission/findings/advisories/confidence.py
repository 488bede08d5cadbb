"""How sure a match is: three levels from what named the product and what the version said.

Calibrated on the labelled set of issue 13 (tests/findings/advisories/labelled_set.yaml, 64 devices,
20 vendors, matched against the whole CISA archive; ``python -m bench.advisories --labelled``
prints the figures, tests/findings/advisories/test_matcher_labelled.py holds their floors):

- **high**: the device's own part number, model or a placeholder pattern of it ("ILC 1x1") is
  spelled by the product, and its firmware is inside a concrete range or every version is named;
- **medium**: a family the device belongs to (families.yaml) is named as a whole, with the
  firmware inside the range or every version;
- **low**: the product was named but the version could not be compared (no firmware, a range that
  is not a version, a part number in the version branch), or the evidence is a sentence of the
  advisory's title, notes or remediation only.

Measured on the labelled set (every match of the 64 devices that a label or a complete device's
search settles): high 82 true / 0 false (precision 1.00), medium 73 / 2 (0.97), low 12 / 5
(0.71). Keeping high keeps half of the true matches; high and medium together 93 %.
"""

from enum import StrEnum
from typing import Final

from cybermission.findings.advisories.versions import VersionOutcome
from cybermission.findings.grades import Confidence as Confidence


class Evidence(StrEnum):
    """What named the product, the strongest first."""

    PART_NUMBER = "part-number"
    MODEL = "model"
    PATTERN = "pattern"
    FAMILY = "family"
    IN_VERSION = "part-number-in-version"
    MENTION = "mention"

    @property
    def rank(self) -> int:
        return _EVIDENCE_RANK[self]


_EVIDENCE_RANK: Final = {
    Evidence.PART_NUMBER: 6,
    Evidence.MODEL: 5,
    Evidence.PATTERN: 4,
    Evidence.FAMILY: 3,
    Evidence.IN_VERSION: 2,
    Evidence.MENTION: 1,
}


def grade(evidence: Evidence, outcome: VersionOutcome) -> Confidence:
    """The confidence of a match from its evidence and its version outcome."""
    if outcome is VersionOutcome.UNKNOWN or evidence in (Evidence.IN_VERSION, Evidence.MENTION):
        return Confidence.LOW
    if evidence in (Evidence.PART_NUMBER, Evidence.MODEL, Evidence.PATTERN):
        return Confidence.HIGH
    return Confidence.MEDIUM
