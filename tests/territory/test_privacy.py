"""The withholding rule on its own: group size, dominance by a few, and subtraction."""

from cybermission.territory.privacy import (
    WITHHELD,
    Cell,
    Part,
    disclose,
    disclose_count,
    withhold_row,
)

K = 3


def _cell(values: dict[str, int], shared: dict[str, int] | None = None) -> Cell:
    shared = shared or {}
    parts = {o: Part(hidden=v, shown=shared.get(o, 0)) for o, v in values.items()}
    full = {o for o in shared if values.get(o, 0) == 0}
    return Cell(parts=parts, hiding=frozenset(parts) - full)


def test_privacy_three_contributors_are_shown() -> None:
    assert disclose(_cell({"a": 1, "b": 2, "c": 4}), threshold=K) == 7


def test_privacy_two_organisations_in_the_group_are_withheld_even_at_zero() -> None:
    assert disclose(_cell({"a": 0, "b": 0}), threshold=K) == WITHHELD


def test_privacy_a_few_non_zero_contributors_are_withheld() -> None:
    # Four in the group, but the value is one organisation's.
    assert disclose(_cell({"a": 5, "b": 0, "c": 0, "d": 0}), threshold=K) == WITHHELD


def test_privacy_zero_everywhere_in_a_large_group_is_shown() -> None:
    assert disclose(_cell({"a": 0, "b": 0, "c": 0}), threshold=K) == 0


def test_privacy_fully_shared_organisations_do_not_count_as_hiding() -> None:
    # a and b share everything: their values are theirs to show; c alone hides nothing non-zero.
    cell = Cell(
        parts={"a": Part(shown=2), "b": Part(shown=3), "c": Part()},
        hiding=frozenset(),
    )
    assert disclose(cell, threshold=K) == 5


def test_privacy_one_hidden_contributor_behind_shared_ones_is_withheld() -> None:
    cell = Cell(
        parts={"a": Part(shown=2), "b": Part(shown=3), "c": Part(hidden=4)},
        hiding=frozenset({"c"}),
    )
    # 9 - 2 - 3 would be c's own number.
    assert disclose(cell, threshold=K) == WITHHELD


def test_privacy_a_withheld_sector_is_not_left_to_subtraction() -> None:
    water = _cell({"a": 1, "b": 1, "c": 1})
    energy = _cell({"d": 1, "e": 1, "f": 2})
    health = _cell({"g": 5})  # one organisation: withheld
    total = _cell({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 2, "g": 5})
    shown, territory = withhold_row([water, energy, health], total, threshold=K)
    # Showing water, energy and the total would give health as 12 - 3 - 4: one more goes.
    assert shown.count(WITHHELD) == 2
    assert shown[2] == WITHHELD
    assert territory == 12


def test_privacy_two_withheld_sectors_together_leave_the_total_shown() -> None:
    water = _cell({"a": 1, "b": 1, "c": 1})
    health = _cell({"g": 5})
    total = _cell({"a": 1, "b": 1, "c": 1, "g": 5})
    shown, territory = withhold_row([water, health], total, threshold=K)
    # Water goes too (else health = 8 - 3); four organisations stand behind the total.
    assert shown == [WITHHELD, WITHHELD]
    assert territory == 8


def test_privacy_total_withheld_when_one_organisation_dominates_it() -> None:
    water = _cell({"a": 1, "b": 0, "c": 0})
    health = _cell({"g": 0})
    total = _cell({"a": 1, "b": 0, "c": 0, "g": 0})
    shown, territory = withhold_row([water, health], total, threshold=K)
    assert shown == [WITHHELD, WITHHELD]
    assert territory == WITHHELD


def test_privacy_counts_of_a_few_organisations_are_withheld_none_and_many_shown() -> None:
    shown = [disclose_count(n, threshold=3) for n in range(5)]
    assert shown == [0, WITHHELD, WITHHELD, 3, 4]
