"""Precision and recall of advisory matching on a labelled set: lab devices x CISA advisories.

Each pair was labelled by reading the advisory's product tree by hand (vendor, product, affected
version range) against the identity the lab device reports (scanners/lab/*_devices.py). The
matcher runs on the real CISA archive; the test fails when precision or recall drops under its
floor, and prints the figures (pytest -s).
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from cybermission.findings.advisories.matching import (
    AdvisoryIndex,
    Confidence,
    DeviceIdentity,
)
from cybermission.findings.advisories.normalise import vendor_key
from cybermission.findings.advisories.store import iter_documents, read_advisory
from cybermission.findings.models import Advisory, AdvisoryProduct
from tests.conftest import shared_data

ARCHIVE = ("advisories", "cisa-csaf-ot-2017-2024.tar.xz")
PRECISION_FLOOR = 0.9
RECALL_FLOOR = 0.85
HELD_OUT_PRECISION_FLOOR = 0.5
HELD_OUT_RECALL_FLOOR = 0.3

# The identities the lab devices report (vendor, firmware, the strings that name them).
DEVICES: dict[str, DeviceIdentity] = {
    # scanners/lab/s7_devices.py
    "s7-300 V3.2.8": DeviceIdentity("Siemens", "V3.2.8", ("6ES7 315-2EH14-0AB0",)),
    "s7-300 V3.2.14": DeviceIdentity("Siemens", "V3.2.14", ("6ES7 315-2EH14-0AB0",)),
    "s7-1200 V4.4.0": DeviceIdentity("Siemens", "V4.4.0", ("6ES7 214-1AG40-0XB0",)),
    # scanners/lab/modbus_devices.py (and the same M340 after a firmware update)
    "m340 v2.5": DeviceIdentity("Schneider Electric", "v2.5", ("BMX P34 2020", "Modicon M340")),
    "m340 v3.60": DeviceIdentity("Schneider Electric", "v3.60", ("BMX P34 2020", "Modicon M340")),
    # scanners/lab/enip_devices.py
    "m580 3.20": DeviceIdentity("Schneider Electric", "3.20", ("BME P58 2040",)),
    "compactlogix 33.11": DeviceIdentity(
        "Rockwell Automation/Allen-Bradley", "33.11", ("1769-L33ER/A LOGIX5333ER",)
    ),
    "nj501 1.40": DeviceIdentity("Omron", "1.40", ("NJ501-1300",)),
    # scanners/lab/fins_devices.py
    "cj2m 02.01": DeviceIdentity("Omron", "02.01", ("CJ2M-CPU33",)),
    # scanners/lab/building_devices.py
    "ebcon 4.10.0": DeviceIdentity("Delta Controls", "4.10.0", ("eBCON",)),
    # scanners/lab/melsec_devices.py (the lab reports no firmware: 55 is set here) and
    # scanners/lab/mms_devices.py
    "r04cpu 55": DeviceIdentity("Mitsubishi Electric", "55", ("R04CPU",)),
    "sel-751 R410-V2": DeviceIdentity("SEL", "R410-V2", ("SEL-751",)),
    # Identities as the s7, melsec and enip probes report such devices (not lab devices).
    "s7-1515 V2.8.1": DeviceIdentity("Siemens", "V2.8.1", ("6ES7 515-2AM01-0AB0",)),
    "fx5u 1.240": DeviceIdentity("Mitsubishi Electric", "1.240", ("FX5U-32MT/ES",)),
    "controllogix 32.011": DeviceIdentity(
        "Rockwell Automation/Allen-Bradley", "32.011", ("1756-L83E/B",)
    ),
}


@dataclass(frozen=True, slots=True)
class Pair:
    device: str
    advisory: str
    affected: bool
    why: str


PAIRS: tuple[Pair, ...] = (
    Pair("s7-300 V3.2.8", "ICSA-18-079-02", True, "CPU 315-2 PN/DP 6ES7315-2EH14-0AB0 < V3.2.16"),
    Pair("s7-300 V3.2.8", "ICSA-19-283-01", True, "6ES7315-2EH14-0AB0 < V3.2.17"),
    Pair("s7-300 V3.2.8", "ICSA-22-104-06", True, "6ES7315-2EH14-0AB0 < V3.2.19"),
    Pair("s7-300 V3.2.8", "ICSA-17-129-02", True, "S7-300 CPU family < V3.X.14"),
    Pair("s7-300 V3.2.8", "ICSA-20-042-05", True, "6ES7315-2EH14-0AB0 < V3.X.17"),
    Pair("s7-300 V3.2.8", "ICSA-17-339-01", True, "S7-300 CPU family < V3.X.16"),
    Pair("s7-300 V3.2.8", "ICSA-23-201-01", False, "Schneider Modicon only"),
    Pair("s7-300 V3.2.8", "ICSA-21-152-01", False, "S7-1200/1500 families, not S7-300"),
    Pair("s7-300 V3.2.14", "ICSA-17-129-02", False, "fixed in V3.X.14"),
    Pair("s7-300 V3.2.14", "ICSA-18-079-02", True, "< V3.2.16"),
    Pair("s7-300 V3.2.14", "ICSA-17-339-01", True, "< V3.X.16"),
    Pair("s7-1200 V4.4.0", "ICSA-21-152-01", True, "S7-1200 CPU family < V4.5.0"),
    Pair("s7-1200 V4.4.0", "ICSA-22-104-05", True, "S7-1200 CPU family < V4.5.2"),
    Pair("s7-1200 V4.4.0", "ICSA-24-284-01", True, "CPU 1214C 6ES7214-1AG40-0XB0, all versions"),
    Pair("s7-1200 V4.4.0", "ICSA-17-129-02", False, "S7-1200 family fixed in V4.2.1"),
    Pair("s7-1200 V4.4.0", "ICSA-19-283-02", False, "S7-1200 family fixed in V4.4.0"),
    Pair("s7-1200 V4.4.0", "ICSA-18-079-02", False, "S7-300/400 CPUs only"),
    Pair("m340 v2.5", "ICSA-23-201-01", True, "Modicon M340 CPU BMXP34* < SV3.51"),
    Pair("m340 v2.5", "ICSA-21-194-02", True, "Modicon M340 CPU BMXP34*, all versions"),
    Pair("m340 v2.5", "ICSA-19-183-01", True, "Modicon M340 < 3.01"),
    Pair("m340 v2.5", "ICSA-17-054-03", True, "M340 CPUs < 2.9"),
    Pair("m340 v2.5", "ICSA-18-079-02", False, "Siemens"),
    Pair("m340 v3.60", "ICSA-23-201-01", False, "fixed in SV3.51"),
    Pair("m340 v3.60", "ICSA-19-183-01", False, "fixed in 3.01"),
    Pair("m340 v3.60", "ICSA-17-054-03", False, "fixed in 2.9"),
    Pair("m340 v3.60", "ICSA-21-194-02", True, "all versions"),
    Pair("m580 3.20", "ICSA-23-201-01", True, "Modicon M580 BMEP* < SV4.10"),
    Pair("m580 3.20", "ICSA-21-194-02", True, "Modicon M580 BMEP*, all versions"),
    Pair("m580 3.20", "ICSA-19-183-01", False, "Modicon M580 fixed in 2.80"),
    Pair("m580 3.20", "ICSA-17-054-03", False, "M580 fixed in 2.3"),
    Pair("compactlogix 33.11", "ICSA-21-061-02", True, "CompactLogix 5370 L3 <= 33"),
    Pair("compactlogix 33.11", "ICSA-22-144-01", True, "CompactLogix 5370 <= 33.013"),
    Pair("compactlogix 33.11", "ICSA-22-090-05", True, "CompactLogix 5370, all versions"),
    Pair("compactlogix 33.11", "ICSA-19-113-01", False, "CompactLogix 5370 L3 fixed after 30.014"),
    Pair("compactlogix 33.11", "ICSA-23-201-01", False, "Schneider"),
    Pair("nj501 1.40", "ICSA-22-179-02", True, "SYSMAC NJ/NX Series < 1.49"),
    Pair("nj501 1.40", "ICSA-22-314-07", True, "NJ/NX-series <= 1.48"),
    Pair("cj2m 02.01", "ICSA-22-179-02", False, "SYSMAC CJ2M fixed in 2.1"),
    Pair("cj2m 02.01", "ICSA-23-262-05", False, "CJ2M-CPU** <= 2.0"),
    Pair("cj2m 02.01", "ICSA-23-073-01", True, "CJ2M-CPU, all versions"),
    Pair("cj2m 02.01", "ICSA-23-108-01", True, "SYSMAC CJ2M-CPU, all versions"),
    Pair("ebcon 4.10.0", "ICSA-19-239-01", False, "eBCON fixed after 3.40 R5"),
)
# Labelled after the matcher was written, never tuned against: the honest figure.
HELD_OUT: tuple[Pair, ...] = (
    Pair("r04cpu 55", "ICSA-20-245-01", False, "R04CPU <= 50"),
    Pair("r04cpu 55", "ICSA-20-282-02", False, "iQ-R series R04CPU <= 52"),
    Pair("r04cpu 55", "ICSA-20-324-05", False, "R04/08/16/32/120(EN)CPU <= 51"),
    Pair("r04cpu 55", "ICSA-21-147-05", True, "R04/08/16/32/120(EN)CPU, all versions"),
    Pair("r04cpu 55", "ICSA-20-175-01", True, "MELSEC iQ-R ... series CPU modules, all versions"),
    Pair("r04cpu 55", "ICSA-20-317-01", False, "R04..120(EN) CPU >= 35, <= 51"),
    Pair("sel-751 R410-V2", "ICSA-24-095-02", False, "SEL-751 R400 line fixed in R400-V2"),
    Pair("s7-1200 V4.4.0", "ICSA-21-152-01", True, "S7-1200 CPU family < V4.5.0"),
)
# Labelled by reading each advisory's product tree (and committed) before the matcher first ran on
# them, after the sibling-list and family changes that the HELD_OUT misses asked for; never tuned
# against. The old HELD_OUT set guided those changes, so it is no longer held out.
NEW_HELD_OUT: tuple[Pair, ...] = (
    Pair("s7-1515 V2.8.1", "ICSA-19-344-06", True, "S7-1500 family >= 2.8.1 (CVE-2019-10943)"),
    Pair("s7-1515 V2.8.1", "ICSA-20-042-11", False, "S7-1500 family >= V2.5 and < V2.8"),
    Pair("s7-1515 V2.8.1", "ICSA-21-152-01", True, "S7-1500 CPU family < V2.9.2"),
    Pair("s7-1515 V2.8.1", "ICSA-22-167-14", True, "S7-1500 CPU family < V3.0.1"),
    Pair("s7-1515 V2.8.1", "ICSA-18-226-02", False, "S7-1500 CPU family < V2.5.2"),
    Pair("s7-1515 V2.8.1", "ICSA-22-314-02", True, "CPU 1515-2 PN 6ES7515-2AM01-0AB0, all"),
    Pair("s7-1515 V2.8.1", "ICSA-21-131-15", False, "CPU 1518(F)-4 PN/DP MFP only"),
    Pair("s7-1515 V2.8.1", "ICSA-19-283-02", False, "S7-1500 CPU family < V2.0"),
    Pair("fx5u 1.240", "ICSA-22-090-04", True, "iQ-F FX5U(C) CPU modules, all versions"),
    Pair("fx5u 1.240", "ICSA-23-061-01", True, "all models of FX5U(C) CPU modules, all"),
    Pair("fx5u 1.240", "ICSA-22-139-01", True, "FX5U-xMy/z (serial 17X) < 1.270"),
    Pair("fx5u 1.240", "ICSA-20-245-01", False, "FX5U(C) <= 1.210"),
    Pair("fx5u 1.240", "ICSA-23-143-03", True, "FX5U-32MT/ES >= 1.220, <= 1.281"),
    Pair("fx5u 1.240", "ICSA-23-306-03", True, "FX5U-32MT/ES, all versions"),
    Pair("fx5u 1.240", "ICSA-20-324-05", False, "iQ-R modules only"),
    Pair("fx5u 1.240", "ICSA-21-147-05", False, "iQ-R CPUs only"),
    Pair("controllogix 32.011", "ICSA-22-144-01", True, "ControlLogix 5580 <= 32.013"),
    Pair("controllogix 32.011", "ICSA-23-026-06", True, "ControlLogix 5580 controllers 28 - 32"),
    Pair("controllogix 32.011", "ICSA-24-107-03", False, "ControlLogix 5580 V35.011 only"),
    Pair("controllogix 32.011", "ICSA-24-163-01", False, "ControlLogix 5580 V34.011 only"),
    Pair("controllogix 32.011", "ICSA-22-342-03", True, "ControlLogix 5580 >= 31.011"),
    Pair("controllogix 32.011", "ICSA-17-094-05", False, "ControlLogix 5580 28.01x, 29.011"),
    Pair("controllogix 32.011", "ICSA-22-354-02", False, "ControlLogix 5570 (1756-L7x) only"),
    Pair("controllogix 32.011", "ICSA-24-030-05", False, "ControlLogix 5570 20.011 only"),
)
ADVISORIES = frozenset(p.advisory for p in (*PAIRS, *HELD_OUT, *NEW_HELD_OUT))


@pytest.fixture(scope="module")
def index() -> AdvisoryIndex:
    """The labelled advisories as imported (read straight from the archive, no store needed)."""
    advisories: list[Advisory] = []
    products: list[AdvisoryProduct] = []
    for _where, raw in iter_documents(shared_data(*ARCHIVE)):
        assert not isinstance(raw, Exception)
        if not any(a.encode() in raw for a in ADVISORIES):
            continue
        record = read_advisory(raw)
        if record.id not in ADVISORIES:
            continue
        advisories.append(
            Advisory(
                id=record.id, title=record.title, cves=record.cves, imported_at=datetime.now(UTC)
            )
        )
        products.extend(
            AdvisoryProduct(
                advisory_id=record.id,
                product_id=p.product_id,
                vendor=p.vendor,
                vendor_key=vendor_key(p.vendor),
                product=p.product,
                version=p.version,
                branch_path=p.branch_path,
                cves=p.cves,
                cvss_score=p.cvss_score,
            )
            for p in record.products
        )
    assert {a.id for a in advisories} == ADVISORIES
    return AdvisoryIndex.build(advisories, products)


def _figures(
    index: AdvisoryIndex, floor: Confidence | None, pairs: tuple[Pair, ...] = PAIRS
) -> tuple[float, float, list[str]]:
    ranks = {Confidence.LOW: 1, Confidence.MEDIUM: 2, Confidence.HIGH: 3}
    tp = fp = fn = 0
    wrong: list[str] = []
    for pair in pairs:
        matches = {
            m.advisory_id
            for m in index.match(DEVICES[pair.device])
            if floor is None or ranks[m.confidence] >= ranks[floor]
        }
        predicted = pair.advisory in matches
        if predicted and pair.affected:
            tp += 1
        elif predicted:
            fp += 1
            wrong.append(f"false positive: {pair}")
        elif pair.affected:
            fn += 1
            wrong.append(f"false negative: {pair}")
    return tp / max(1, tp + fp), tp / max(1, tp + fn), wrong


def test_labelled_set_is_balanced() -> None:
    positives = sum(p.affected for p in PAIRS)
    assert len(PAIRS) >= 30
    assert positives >= 10
    assert len(PAIRS) - positives >= 10


def test_labelled_precision_and_recall_hold_their_floor(index: AdvisoryIndex) -> None:
    precision, recall, wrong = _figures(index, None)
    print(
        f"\nadvisory matching, {len(PAIRS)} labelled pairs: precision {precision:.3f}, "
        f"recall {recall:.3f}"
    )
    for line in wrong:
        print(" ", line)
    assert precision >= PRECISION_FLOOR, wrong
    assert recall >= RECALL_FLOOR, wrong


def test_labelled_medium_confidence_and_above_is_precise(index: AdvisoryIndex) -> None:
    precision, recall, wrong = _figures(index, Confidence.MEDIUM)
    print(f"\nconfidence >= medium: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= PRECISION_FLOOR, wrong


def test_labelled_held_out_pairs(index: AdvisoryIndex) -> None:
    precision, recall, wrong = _figures(index, None, HELD_OUT)
    print(f"\nheld out, {len(HELD_OUT)} pairs: precision {precision:.3f}, recall {recall:.3f}")
    for line in wrong:
        print(" ", line)
    assert precision >= HELD_OUT_PRECISION_FLOOR, wrong
    assert recall >= HELD_OUT_RECALL_FLOOR, wrong


def test_labelled_new_held_out_pairs(index: AdvisoryIndex) -> None:
    precision, recall, wrong = _figures(index, None, NEW_HELD_OUT)
    print(
        f"\nnew held out, {len(NEW_HELD_OUT)} pairs: precision {precision:.3f}, recall {recall:.3f}"
    )
    for line in wrong:
        print(" ", line)
    assert precision >= HELD_OUT_PRECISION_FLOOR, wrong
    assert recall >= HELD_OUT_RECALL_FLOOR, wrong
