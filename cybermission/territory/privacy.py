"""The withholding rule: which aggregates the coordinator may see (README.md, "Privacy rules").

An aggregate sums one number over a group of organisations (a sector, the territory). Each
organisation's part splits in two: what comes from devices it shared with the coordinator
(``shown``) and the rest (``hidden``). The aggregate is withheld when it could single out the
hidden part of an organisation:

- fewer than ``threshold`` (but some) organisations of the group hide anything (the group is too
  small: even a zero would tell about each), or
- fewer than ``threshold`` (but some) organisations hide a non-zero part (a few dominate it).

Withholding one sector but showing the territory would let the sector be computed by subtraction,
so :func:`withhold_row` also withholds the next smallest sectors (secondary suppression) until
what is withheld together passes the same test, or withholds the total.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

WITHHELD: Final = "withheld"
Shown = int | Literal["withheld"]


@dataclass(frozen=True, slots=True)
class Part:
    """One organisation's part of an aggregate."""

    hidden: int = 0  # from devices it did not share
    shown: int = 0  # from devices it shared

    def __add__(self, other: "Part") -> "Part":
        return Part(self.hidden + other.hidden, self.shown + other.shown)


@dataclass(frozen=True, slots=True)
class Cell:
    """An aggregate before the rule: the parts of the organisations of its group, and which of
    them hide something (``hiding``: not every device shared, whatever its value)."""

    parts: Mapping[str, Part]
    hiding: frozenset[str]

    @property
    def total(self) -> int:
        return sum(p.hidden + p.shown for p in self.parts.values())

    def contributors(self) -> frozenset[str]:
        return frozenset(org for org, p in self.parts.items() if p.hidden > 0)


def _small(count: int, threshold: int) -> bool:
    return 0 < count < threshold


def is_safe(hiding: Iterable[str], contributors: Iterable[str], *, threshold: int) -> bool:
    """Neither the organisations hiding something nor those hiding a non-zero part are a few."""
    return not (
        _small(len(frozenset(hiding)), threshold) or _small(len(frozenset(contributors)), threshold)
    )


def disclose(cell: Cell, *, threshold: int) -> Shown:
    """The cell's value, or "withheld" (first rule of the module)."""
    if is_safe(cell.hiding, cell.contributors(), threshold=threshold):
        return cell.total
    return WITHHELD


def disclose_count(organizations: int, *, threshold: int) -> Shown:
    """A count of organisations (how many do X), or "withheld" when it is a few but not none: a
    count of one or two would point at who, among partners the coordinator knows."""
    return WITHHELD if _small(organizations, threshold) else organizations


def withhold_row(
    cells: Sequence[Cell], total: Cell, *, threshold: int
) -> tuple[list[Shown], Shown]:
    """The cells of one row (sectors) and their total (the territory), with primary and
    secondary suppression: what is withheld, taken together, passes the rule too."""
    shown: list[Shown] = [disclose(c, threshold=threshold) for c in cells]
    while True:
        withheld = [c for c, s in zip(cells, shown, strict=True) if s == WITHHELD]
        hiding = frozenset().union(*(c.hiding for c in withheld))
        contributors = frozenset().union(*(c.contributors() for c in withheld))
        if is_safe(hiding, contributors, threshold=threshold):
            break
        candidates = [i for i, s in enumerate(shown) if s != WITHHELD]
        if not candidates:
            return shown, WITHHELD
        # The cheapest to withhold: the fewest organisations hiding, then the smallest value.
        pick = min(candidates, key=lambda i: (len(cells[i].hiding), cells[i].total, i))
        shown[pick] = WITHHELD
    return shown, disclose(total, threshold=threshold)
