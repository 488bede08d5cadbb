"""Gaps in the event log's ids, so the outbox planner never skips an event that commits late.

Event ids come from a sequence (PostgreSQL) that hands them out when a transaction *writes* the
row, not when it commits: transaction A takes id 10, B takes 11 and commits first, the planner
reads 11 and moves its cursor past 10. When A commits, event 10 sits below the cursor and would
never be planned. So the planner remembers each id it stepped over (a gap) and looks for it again
on every pass until it appears, or until a grace period says it never will (A rolled back: ids
are not given back). SQLite has a single writer, so it never leaves a gap to wait for.

Gaps are kept as inclusive ranges ``[first, last, noticed_at]``: a rolled-back batch of events is
one range, not thousands of ids.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_
from sqlmodel import col

from cybermission.events import Event

logger = logging.getLogger(__name__)

# More ranges than this at once means something else is wrong (mass rollbacks); the oldest are
# given up first so the planner's query stays bounded.
MAX_GAPS = 200


@dataclass(frozen=True, slots=True)
class Gap:
    """Event ids ``first..last`` (inclusive) not seen since ``noticed_at``."""

    first: int
    last: int
    noticed_at: datetime


def gaps_from_json(raw: Sequence[Sequence[Any]]) -> list[Gap]:
    return [Gap(int(first), int(last), datetime.fromisoformat(at)) for first, last, at in raw]


def gaps_to_json(gaps: Iterable[Gap]) -> list[list[Any]]:
    return [[gap.first, gap.last, gap.noticed_at.isoformat()] for gap in gaps]


def gap_condition(gaps: Sequence[Gap]) -> ColumnElement[bool]:
    """Events whose id falls in one of ``gaps`` (the late commits to plan now)."""
    return or_(*(col(Event.id).between(gap.first, gap.last) for gap in gaps))


def note_missing(
    gaps: Sequence[Gap], *, after_id: int, seen_ids: Sequence[int], now: datetime
) -> list[Gap]:
    """``gaps`` plus every id after ``after_id`` and below the last of ``seen_ids`` (ascending)
    that is not among them."""
    noted = list(gaps)
    expected = after_id + 1
    for event_id in seen_ids:
        if event_id > expected:
            noted.append(Gap(expected, event_id - 1, now))
        expected = max(expected, event_id + 1)
    return noted


def remove_seen(gaps: Sequence[Gap], seen_ids: Iterable[int]) -> list[Gap]:
    """``gaps`` without ``seen_ids``: a range with a hole in it splits in two."""
    remaining = list(gaps)
    for event_id in sorted(set(seen_ids)):
        split: list[Gap] = []
        for gap in remaining:
            if not gap.first <= event_id <= gap.last:
                split.append(gap)
                continue
            if gap.first < event_id:
                split.append(Gap(gap.first, event_id - 1, gap.noticed_at))
            if event_id < gap.last:
                split.append(Gap(event_id + 1, gap.last, gap.noticed_at))
        remaining = split
    return remaining


def expire_gaps(gaps: Sequence[Gap], *, now: datetime, grace_s: float) -> list[Gap]:
    """The gaps still worth waiting for: noticed less than ``grace_s`` ago, at most
    :data:`MAX_GAPS` of them (newest kept). Those given up are logged: their ids were rolled back,
    or an event committed that late will not be alerted."""
    cutoff = now - timedelta(seconds=grace_s)
    kept = [gap for gap in gaps if gap.noticed_at > cutoff]
    kept.sort(key=lambda gap: (gap.noticed_at, gap.first))
    if len(kept) > MAX_GAPS:
        kept = kept[-MAX_GAPS:]
    given_up = [gap for gap in gaps if gap not in kept]
    for gap in given_up:
        logger.info(
            "outbox stopped waiting for event ids",
            extra={"first_event_id": gap.first, "last_event_id": gap.last},
        )
    kept.sort(key=lambda gap: gap.first)
    return kept
