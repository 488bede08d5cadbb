"""Precision and recall of the advisory matcher on the labelled set (labelled_set.yaml).

The matcher runs on the index of the whole CISA archive, as in production. A pair counts when it is
labelled: affected (a miss is a false negative) or not affected (a match is a false positive). For
a device whose labels are ``complete``, a match to an advisory that is not labelled at all (nor
ambiguous) is a false positive too. Figures come by vendor, by confidence level (the precision of
each level on its own) and for the part the earlier tests never used (``seen_in_tests: false``).
Used by tests/findings/advisories/test_matcher_labelled.py and ``python -m bench.advisories``.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cybermission.findings.advisories.matching import AdvisoryIndex, AdvisoryMatch, DeviceIdentity
from cybermission.findings.advisories.store import iter_documents, read_advisory
from cybermission.findings.models import Advisory, AdvisoryProduct
from tests.findings.advisories.labelled_set import LabelledDevice


@dataclass(slots=True)
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def line(self, name: str) -> str:
        return (
            f"{name:<34} P {self.precision:.3f}  R {self.recall:.3f}  "
            f"(tp {self.tp}, fp {self.fp}, fn {self.fn})"
        )


@dataclass(slots=True)
class Figures:
    overall: Tally = field(default_factory=Tally)
    unseen: Tally = field(default_factory=Tally)
    by_vendor: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    # Each level on its own: its true and false positives (recall is that of "this level or up").
    by_confidence: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    at_least: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    wrong: list[str] = field(default_factory=list)

    def table(self) -> str:
        lines = [self.overall.line("overall"), self.unseen.line("unseen by earlier tests")]
        lines += [self.by_vendor[v].line(f"vendor {v}") for v in sorted(self.by_vendor)]
        for level in ("high", "medium", "low"):
            mine = self.by_confidence[level]
            lines.append(
                f"{'confidence ' + level:<34} P {mine.precision:.3f}  "
                f"({mine.tp} true, {mine.fp} false); at least {level}: "
                f"R {self.at_least[level].recall:.3f}"
            )
        return "\n".join(lines)


_LEVELS = ("high", "medium", "low")


def build_index(archive: Path) -> AdvisoryIndex:
    """The index of every advisory of the archive, as imported (no store needed)."""
    advisories: list[Advisory] = []
    products: list[AdvisoryProduct] = []
    for _where, raw in iter_documents(archive):
        if isinstance(raw, Exception):
            continue
        record = read_advisory(raw)
        advisories.append(
            Advisory(
                id=record.id,
                title=record.title,
                cves=record.cves,
                cvss_score=record.cvss_score,
                mentions=record.mentions,
            )
        )
        products.extend(
            AdvisoryProduct(
                advisory_id=record.id,
                product_id=p.product_id,
                vendor=p.vendor,
                product=p.product,
                version=p.version,
                branch_path=p.branch_path,
                cves=p.cves,
                cvss_score=p.cvss_score,
            )
            for p in record.products
        )
    return AdvisoryIndex.build(advisories, products)


def identity(device: LabelledDevice) -> DeviceIdentity:
    return DeviceIdentity(vendor=device.vendor, firmware=device.firmware, names=device.names)


def measure(index: AdvisoryIndex, devices: Iterable[LabelledDevice]) -> Figures:
    figures = Figures()
    for device in devices:
        matches: dict[str, AdvisoryMatch] = {
            m.advisory_id: m for m in index.match(identity(device))
        }
        labelled = {label.advisory: label for label in device.labels}
        ambiguous = {a.advisory for a in device.ambiguous}
        tallies = [figures.overall, figures.by_vendor[device.vendor]]
        if not device.seen_in_tests:
            tallies.append(figures.unseen)
        for advisory, label in labelled.items():
            found = matches.get(advisory)
            _count(figures, tallies, device.id, advisory, found, affected=label.affected)
        if device.complete:
            for advisory, found in matches.items():
                if advisory not in labelled and advisory not in ambiguous:
                    _count(figures, tallies, device.id, advisory, found, affected=False)
    return figures


def _count(
    figures: Figures,
    tallies: list[Tally],
    device: str,
    advisory: str,
    found: AdvisoryMatch | None,
    *,
    affected: bool,
) -> None:
    level = found.confidence.value if found is not None else None
    for name in _LEVELS:
        tally = figures.at_least[name]
        hit = level is not None and _LEVELS.index(level) <= _LEVELS.index(name)
        if hit and affected:
            tally.tp += 1
        elif hit:
            tally.fp += 1
        elif affected:
            tally.fn += 1
    if level is not None:
        mine = figures.by_confidence[level]
        if affected:
            mine.tp += 1
        else:
            mine.fp += 1
    for tally in tallies:
        if found is not None and affected:
            tally.tp += 1
        elif found is not None:
            tally.fp += 1
        elif affected:
            tally.fn += 1
    if found is not None and not affected:
        figures.wrong.append(f"FP {device} {advisory} [{level}] {found.reason}")
    elif found is None and affected:
        figures.wrong.append(f"FN {device} {advisory}")
