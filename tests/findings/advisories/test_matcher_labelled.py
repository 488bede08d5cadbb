"""The matcher on the labelled set of issue 13 (labelled_set.yaml) against the whole CISA archive.

Floors: precision and recall >= 0.9 overall and on the part the earlier tests never used; each
confidence level at least as precise as the level below it, and high and medium >= 0.9. The
figures print with ``pytest -s`` (and ``python -m bench.advisories --labelled``).
"""

import pytest

from cybermission.findings.advisories.matching import AdvisoryIndex
from tests.conftest import shared_data
from tests.findings.advisories.labelled_set import load_labelled_set
from tests.findings.advisories.measure import Figures, build_index, measure

FLOOR = 0.9


@pytest.fixture(scope="module")
def index() -> AdvisoryIndex:
    return build_index(shared_data("advisories", "cisa-csaf-ot-2017-2024.tar.xz"))


@pytest.fixture(scope="module")
def figures(index: AdvisoryIndex) -> Figures:
    found = measure(index, load_labelled_set())
    print("\n" + found.table())
    for line in found.wrong:
        print(" ", line)
    return found


def test_matcher_labelled_overall_precision_and_recall(figures: Figures) -> None:
    assert figures.overall.precision >= FLOOR, figures.wrong
    assert figures.overall.recall >= FLOOR, figures.wrong


def test_matcher_labelled_unseen_part_precision_and_recall(figures: Figures) -> None:
    assert figures.unseen.precision >= FLOOR, figures.wrong
    assert figures.unseen.recall >= FLOOR, figures.wrong


def test_matcher_labelled_confidence_levels_are_calibrated(figures: Figures) -> None:
    high, medium, low = (figures.by_confidence[level] for level in ("high", "medium", "low"))
    assert high.tp
    assert medium.tp
    assert high.precision >= FLOOR
    assert medium.precision >= FLOOR
    assert high.precision >= medium.precision >= low.precision - 0.15
