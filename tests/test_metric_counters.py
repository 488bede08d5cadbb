"""Store counters: increments add up under concurrent writers, never go down, and histograms
cumulate their buckets."""

import threading

import pytest
from sqlalchemy import Engine

from cybermission.db import session_scope
from cybermission.metric_counters import increment, observe, read_counters, read_histogram

WRITERS = 4
INCREMENTS = 25


def test_metric_counters_concurrent_increments_are_all_kept(engine: Engine) -> None:
    def write() -> None:
        for _ in range(INCREMENTS):
            with session_scope(engine) as session:
                increment(session, "cybermission_things", {"kind": "a"})

    threads = [threading.Thread(target=write) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with session_scope(engine) as session:
        [sample] = read_counters(session, ["cybermission_things"])
    assert sample.labels == {"kind": "a"}
    assert sample.value == WRITERS * INCREMENTS


def test_metric_counters_label_order_is_one_series(engine: Engine) -> None:
    with session_scope(engine) as session:
        increment(session, "cybermission_pairs", {"a": "1", "b": "2"})
        increment(session, "cybermission_pairs", {"b": "2", "a": "1"}, by=2.5)
    with session_scope(engine) as session:
        assert [s.value for s in read_counters(session, ["cybermission_pairs"])] == [3.5]


def test_metric_counters_refuse_to_go_down(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(ValueError, match="only goes up"):
        increment(session, "cybermission_things", by=-1)


def test_metric_counters_histogram_cumulates_buckets(engine: Engine) -> None:
    bounds = (1.0, 10.0)
    with session_scope(engine) as session:
        for seconds in (0.5, 3.0, 3.0, 99.0):
            observe(session, "cybermission_waits_seconds", seconds, bounds=bounds)
    with session_scope(engine) as session:
        buckets, total = read_histogram(session, "cybermission_waits_seconds", bounds=bounds)
    assert buckets == [("1.0", 1.0), ("10.0", 3.0), ("+Inf", 4.0)]
    assert total == 105.5
