"""One factor for every timeout a test grants a real peer (simulator, server, broker, process).

The values written in the tests are what an idle machine needs; CI runs on a shared 2-core
machine that may be loaded, where a simulator on the other end of loopback can wait its turn for
a core far longer. Every timeout that a passing test must not hit goes through :func:`scaled`,
so one knob (``CYBERMISSION_TEST_TIMEOUT_FACTOR``) widens them all together. Timeouts a test
*expects* to expire (a silent device) stay as written: scaling them would only slow the suite.
"""

from __future__ import annotations

import os

#: Generous by default: a timeout only costs time when something is wrong.
FACTOR = float(os.environ.get("CYBERMISSION_TEST_TIMEOUT_FACTOR", "4"))


def scaled(seconds: float) -> float:
    """``seconds`` widened by the suite's one timeout factor."""
    return seconds * FACTOR
