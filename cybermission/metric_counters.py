"""Monotonic counters and histograms kept in the store, fed where the thing they count happens.

Prometheus counters must only go up (``rate()`` reads a drop as a restart). Counting rows at
scrape time is not that: a deleted alert channel takes its deliveries with it, and a histogram
rebuilt from the latest N runs forgets the oldest. So the code that starts or ends a run, or
records a delivery, adds to a ``metric_counter`` row *in the same transaction* (an upsert that
adds, so concurrent writers never lose an increment), and ``/metrics`` reads the rows. Every
replica reports the same figures and a restart loses nothing.

A histogram is three kinds of rows under one name: ``<name>_bucket`` per upper bound (not
cumulative: each observation adds to the smallest bound that holds it, so a later change of the
bounds never rewrites history), ``<name>_sum`` and ``<name>_count``.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Float, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel, select

# Label sets are small, fixed vocabularies (a status, a channel's name); bounded for the key.
MAX_LABELS_CHARS = 500


class MetricCounter(SQLModel, table=True):
    """One series: a metric name and its labels (canonical JSON), with its running total."""

    __tablename__ = "metric_counter"

    name: str = Field(primary_key=True, max_length=100, sa_type=String(100))
    labels: str = Field(primary_key=True, max_length=MAX_LABELS_CHARS)
    value: float = Field(default=0.0, sa_type=Float)


@dataclass(frozen=True, slots=True)
class CounterSample:
    name: str
    labels: dict[str, str]
    value: float


def labels_key(labels: Mapping[str, str] | None) -> str:
    """The canonical text of a label set (sorted keys), so one series is always one row."""
    key = json.dumps(dict(sorted((labels or {}).items())), separators=(",", ":"))
    if len(key) > MAX_LABELS_CHARS:
        raise ValueError(f"metric labels longer than {MAX_LABELS_CHARS} characters: {key[:80]}")
    return key


def increment(
    session: Session, name: str, labels: Mapping[str, str] | None = None, by: float = 1.0
) -> None:
    """Add ``by`` (>= 0) to the series; part of the caller's transaction."""
    if by < 0 or math.isnan(by):
        raise ValueError(f"a counter only goes up: {name} by {by}")
    table = MetricCounter.__table__  # type: ignore[attr-defined]
    row = {"name": name, "labels": labels_key(labels), "value": by}
    dialect = session.get_bind().dialect.name
    # The same upsert in both dialects; the insert classes differ only by name.
    statement: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(row)
        statement = pg.on_conflict_do_update(
            index_elements=["name", "labels"], set_={"value": table.c.value + pg.excluded.value}
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(table).values(row)
        statement = lite.on_conflict_do_update(
            index_elements=["name", "labels"], set_={"value": table.c.value + lite.excluded.value}
        )
    else:
        raise NotImplementedError(f"metric counters need PostgreSQL or SQLite, not {dialect}")
    session.execute(statement)


def observe(
    session: Session,
    name: str,
    value: float,
    *,
    bounds: Sequence[float],
    labels: Mapping[str, str] | None = None,
) -> None:
    """Count one observation of the histogram ``name`` (``bounds`` ascending, +Inf implied)."""
    value = max(0.0, value)
    bound = next((b for b in bounds if value <= b), math.inf)
    increment(session, f"{name}_bucket", {**(labels or {}), "le": _bound_text(bound)})
    increment(session, f"{name}_sum", labels, by=value)
    increment(session, f"{name}_count", labels)


def read_counters(session: Session, names: Sequence[str]) -> list[CounterSample]:
    """Every stored series of ``names``."""
    rows = session.exec(select(MetricCounter).where(MetricCounter.name.in_(names)))  # type: ignore[attr-defined]
    return [CounterSample(r.name, json.loads(r.labels), r.value) for r in rows]


def read_histogram(
    session: Session, name: str, *, bounds: Sequence[float]
) -> tuple[list[tuple[str, float]], float]:
    """(cumulative buckets with their ``le`` text, +Inf last; sum) of an unlabelled histogram."""
    samples = read_counters(session, [f"{name}_bucket", f"{name}_sum", f"{name}_count"])
    per_bound: dict[float, float] = {b: 0.0 for b in bounds}
    total = 0.0
    count = 0.0
    for sample in samples:
        if sample.name.endswith("_bucket"):
            bound = float(sample.labels["le"])
            per_bound[bound] = per_bound.get(bound, 0.0) + sample.value
        elif sample.name.endswith("_sum"):
            total = sample.value
        else:
            count = sample.value
    cumulative: list[tuple[str, float]] = []
    running = 0.0
    for bound in sorted(b for b in per_bound if not math.isinf(b)):
        running += per_bound[bound]
        cumulative.append((_bound_text(bound), running))
    # +Inf equals _count by definition; both come from the same transactions.
    cumulative.append(("+Inf", max(count, running + per_bound.get(math.inf, 0.0))))
    return cumulative, total


def _bound_text(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))
