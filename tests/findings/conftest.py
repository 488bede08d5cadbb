"""Findings tests: a session on the empty store (SQLite and PostgreSQL) and a device."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.inventory.models import Device


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    # expire_on_commit=False: tests read rows back after the service under test commits.
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def device(session: Session) -> Device:
    device = Device(name="plc")
    session.add(device)
    session.commit()
    return device
