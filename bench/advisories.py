"""Benchmark: import the whole CISA CSAF archive, then match 10,000 synthetic devices against it.

    python -m bench.advisories [--devices 10000] [--seed 7] [--postgres URL] [--archive PATH]
    python -m bench.advisories --labelled      # precision/recall on the labelled set only

Import: the 2,379 advisories of ``../shared/data/advisories`` into a fresh SQLite store (and a
fresh PostgreSQL database with ``--postgres``), once cold and once again (the idempotent re-import
that only compares release dates). Matching: the index is loaded from the store, then 10,000
devices are matched: half drawn from the affected products (their names and part numbers, a random
firmware), half from the same vendors with model names no advisory uses. Prints seconds and rates.
No network: everything is local files and databases.

``--labelled``: the matcher on the labelled set of issue 13 (tests/findings/advisories/
labelled_set.yaml) against the whole archive: precision and recall overall, on the part the
earlier tests never used, by vendor, and the precision of each confidence level.
"""

import argparse
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, col, select

from bench.postgres_database import throwaway_database
from cybermission import models  # noqa: F401  (registers every table)
from cybermission.db import create_db_engine, utcnow
from cybermission.findings.advisories.matching import AdvisoryIndex, DeviceIdentity
from cybermission.findings.advisories.store import import_advisories
from cybermission.findings.models import AdvisoryProduct

ARCHIVE = (
    Path(__file__).resolve().parents[2] / "shared/data/advisories/cisa-csaf-ot-2017-2024.tar.xz"
)


def _import(engine: Engine, archive: Path) -> tuple[float, float, int]:
    SQLModel.metadata.create_all(engine)
    started = time.perf_counter()
    with Session(engine) as session:
        report = import_advisories(session, archive, now=utcnow())
        session.commit()
    cold = time.perf_counter() - started
    started = time.perf_counter()
    with Session(engine) as session:
        import_advisories(session, archive, now=utcnow())
        session.commit()
    return cold, time.perf_counter() - started, report.created


def _devices(products: list[AdvisoryProduct], count: int, seed: int) -> list[DeviceIdentity]:
    rng = random.Random(seed)
    devices: list[DeviceIdentity] = []
    for index in range(count):
        product = rng.choice(products)
        firmware = f"V{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}"
        if index % 2 == 0:
            names: tuple[str, ...] = (product.product,)
        else:
            names = (f"XQ-{rng.randint(1000, 9999)}", f"Unlisted model {rng.randint(1, 10**6)}")
        devices.append(DeviceIdentity(vendor=product.vendor, firmware=firmware, names=names))
    return devices


def _match(engine: Engine, count: int, seed: int) -> None:
    started = time.perf_counter()
    with Session(engine) as session:
        index = AdvisoryIndex.load(session)
        products = list(
            session.exec(
                select(AdvisoryProduct).order_by(
                    col(AdvisoryProduct.advisory_id), col(AdvisoryProduct.product_id)
                )
            )
        )
    load_s = time.perf_counter() - started
    devices = _devices(products, count, seed)
    started = time.perf_counter()
    matched = sum(1 for device in devices if index.match(device))
    match_s = time.perf_counter() - started
    distinct = len({(d.vendor, d.firmware, d.names) for d in devices})
    print(f"index load: {load_s:.2f} s ({len(index)} affected products)")
    print(
        f"matching {count} devices ({distinct} distinct identities): {match_s:.2f} s, "
        f"{count / match_s:,.0f} devices/s; {matched} devices with at least one advisory"
    )


def _labelled(archive: Path) -> None:
    from tests.findings.advisories.labelled_set import load_labelled_set
    from tests.findings.advisories.measure import build_index, measure

    started = time.perf_counter()
    index = build_index(archive)
    built = time.perf_counter() - started
    devices = load_labelled_set()
    started = time.perf_counter()
    figures = measure(index, devices)
    print(f"index of the archive: {built:.2f} s ({len(index)} affected products)")
    print(f"{len(devices)} labelled devices matched in {time.perf_counter() - started:.2f} s")
    print(figures.table())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument(
        "--postgres", help="admin URL, e.g. postgresql+psycopg://postgres@127.0.0.1/postgres"
    )
    parser.add_argument("--labelled", action="store_true", help="precision/recall only")
    args = parser.parse_args()
    if args.labelled:
        _labelled(args.archive)
        return
    with tempfile.TemporaryDirectory() as folder:
        engine = create_db_engine(f"sqlite:///{folder}/bench.db")
        cold, again, created = _import(engine, args.archive)
        print(f"sqlite import: {created} advisories in {cold:.2f} s; re-import {again:.2f} s")
        _match(engine, args.devices, args.seed)
        engine.dispose()
    if args.postgres:
        with throwaway_database(args.postgres) as engine:
            cold, again, created = _import(engine, args.archive)
            print(f"postgres import: {created} advisories in {cold:.2f} s; re-import {again:.2f} s")
            _match(engine, args.devices, args.seed)


if __name__ == "__main__":
    main()
