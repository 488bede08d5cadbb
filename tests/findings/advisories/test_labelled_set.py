"""The labelled set of issue 13 checked as data: every advisory exists, every quoted reason is the
advisory's own text, the size and balance the issue asks for. The matcher is not run here."""

import json
import re
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared_data
from tests.findings.advisories.labelled_set import (
    LabelledDevice,
    PairClass,
    Reason,
    load_labelled_set,
)

ARCHIVE = ("advisories", "cisa-csaf-ot-2017-2024.tar.xz")
# "..." spans in a `why`; \" inside one is a literal quote of the advisory (inch marks, serials).
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
# The classes issue 13 names as whole missed classes; each must be tested by affected pairs.
ISSUE_CLASSES = (
    PairClass.FAMILY,
    PairClass.X_WILDCARD,
    PairClass.INNER_SPACE,
    PairClass.PART_NUMBER_IN_VERSION,
    PairClass.VERSION_SEMANTICS,
    PairClass.TEXT_MENTION,
)
MIN_AFFECTED_PER_CLASS = 5
MIN_PER_REASON = 5


@pytest.fixture(scope="module")
def devices() -> tuple[LabelledDevice, ...]:
    return load_labelled_set()


@pytest.fixture(scope="module")
def advisory_texts() -> dict[str, str]:
    """Tracking id -> the advisory's title, product tree, notes and remediations, normalised."""
    texts: dict[str, str] = {}
    with tarfile.open(shared_data(*ARCHIVE)) as archive:
        for member in archive:
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None or not member.name.endswith(".json"):
                continue
            document = json.load(handle)
            tracking_id = document["document"]["tracking"]["id"]
            texts[tracking_id] = _normalise(" \n ".join(_strings(document)))
    return texts


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def _advisories(device: LabelledDevice) -> list[str]:
    return [label.advisory for label in device.labels] + [
        entry.advisory for entry in device.ambiguous
    ]


def test_labelled_set_advisory_ids_exist_in_the_archive(
    devices: tuple[LabelledDevice, ...], advisory_texts: dict[str, str]
) -> None:
    missing = [
        (device.id, advisory)
        for device in devices
        for advisory in _advisories(device)
        if advisory not in advisory_texts
    ]
    assert missing == []


def test_labelled_set_quotes_are_the_advisory_text(
    devices: tuple[LabelledDevice, ...], advisory_texts: dict[str, str]
) -> None:
    """Each reason quotes the CSAF branch or sentence that decides it, verbatim."""
    whys = [(device.id, label.advisory, label.why) for device in devices for label in device.labels]
    whys += [
        (device.id, entry.advisory, entry.why) for device in devices for entry in device.ambiguous
    ]
    unquoted = [(device, advisory) for device, advisory, why in whys if not QUOTED.search(why)]
    misquoted = [
        (device, advisory, quote)
        for device, advisory, why in whys
        for quote in QUOTED.findall(why)
        if _normalise(quote.replace('\\"', '"')) not in advisory_texts.get(advisory, "")
    ]
    assert unquoted == []
    assert misquoted == []


def test_labelled_set_every_device_has_a_scored_pair(devices: tuple[LabelledDevice, ...]) -> None:
    assert [device.id for device in devices if not device.labels] == []


def test_labelled_set_labels_each_advisory_once_per_device(
    devices: tuple[LabelledDevice, ...],
) -> None:
    repeated = {
        device.id: sorted(
            advisory for advisory, count in Counter(_advisories(device)).items() if count > 1
        )
        for device in devices
    }
    assert {device: advisories for device, advisories in repeated.items() if advisories} == {}


def test_labelled_set_has_no_duplicate_device(devices: tuple[LabelledDevice, ...]) -> None:
    ids = Counter(device.id for device in devices)
    identities = Counter(
        (device.vendor, device.firmware, tuple(sorted(device.names))) for device in devices
    )
    assert [device_id for device_id, count in ids.items() if count > 1] == []
    assert [identity for identity, count in identities.items() if count > 1] == []


def test_labelled_set_size_and_vendor_spread(devices: tuple[LabelledDevice, ...]) -> None:
    assert len(devices) >= 60
    assert len({device.vendor for device in devices}) >= 15


def test_labelled_set_hard_negatives_are_at_least_thirty_percent(
    devices: tuple[LabelledDevice, ...],
) -> None:
    labels = [label for device in devices for label in device.labels]
    negatives = [label for label in labels if not label.affected]
    assert len(negatives) >= 0.3 * len(labels)


def test_labelled_set_at_least_half_the_devices_are_unseen_families(
    devices: tuple[LabelledDevice, ...],
) -> None:
    unseen = [device for device in devices if not device.seen_in_tests]
    assert len(unseen) * 2 >= len(devices)
    assert len(unseen) < len(devices)  # the seen part is measured too


def test_labelled_set_covers_the_classes_and_reasons_of_the_issue(
    devices: tuple[LabelledDevice, ...],
) -> None:
    affected = Counter(
        pair_class
        for device in devices
        for label in device.labels
        if label.affected
        for pair_class in label.classes
    )
    reasons = Counter(label.reason for device in devices for label in device.labels)
    assert {c: affected[c] for c in ISSUE_CLASSES if affected[c] < MIN_AFFECTED_PER_CLASS} == {}
    assert {r: reasons[r] for r in Reason if reasons[r] < MIN_PER_REASON} == {}


def _one_device_set(tmp_path: Path, firmware: str, pairs: str) -> Path:
    path = tmp_path / "set.yaml"
    path.write_text(
        "devices:\n"
        f"  - {{id: d, vendor: V, firmware: {firmware}, names: [X], family: F,\n"
        f"     seen_in_tests: false, complete: true, {pairs}}}\n",
        encoding="utf-8",
    )
    return path


def test_load_labelled_set_rejects_an_unquoted_version(tmp_path: Path) -> None:
    """YAML reads firmware 2.42 as a float; the loader must refuse it rather than keep 2.42000."""
    path = _one_device_set(
        tmp_path, "2.42", "affected: [{id: ICSA-23-033-04, why: '\"X\"', classes: [name]}]"
    )
    with pytest.raises(ValueError, match="'firmware'"):
        load_labelled_set(path)


def test_load_labelled_set_rejects_a_negative_without_a_known_reason(tmp_path: Path) -> None:
    path = _one_device_set(
        tmp_path,
        "'1.0'",
        "not_affected: [{id: ICSA-23-033-04, reason: unlucky, why: '\"X\"', classes: [name]}]",
    )
    with pytest.raises(ValueError, match="unlucky"):
        load_labelled_set(path)


def test_load_labelled_set_accepts_a_well_formed_device(tmp_path: Path) -> None:
    path = _one_device_set(
        tmp_path, "'2.42'", "affected: [{id: ICSA-23-033-04, why: '\"X\"', classes: [name]}]"
    )
    (device,) = load_labelled_set(path)
    assert (device.firmware, device.affected, device.not_affected) == (
        "2.42",
        frozenset({"ICSA-23-033-04"}),
        frozenset(),
    )
