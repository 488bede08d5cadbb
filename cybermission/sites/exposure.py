"""How reachable a network zone is (no table: cheap to import)."""

from enum import StrEnum


class ZoneExposure(StrEnum):
    """How reachable a zone is from outside; the score weighs findings by it."""

    # The words match the score's exposure factors (cybermission/findings/scoring.py).
    INTERNET = "internet"
    ENTERPRISE = "enterprise"  # the IT network, Purdue levels 4-5
    DMZ = "dmz"
    CONTROL = "control"  # a control network, Purdue levels 1-3
    ISOLATED = "isolated"  # a cell with no route out
