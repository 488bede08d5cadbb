"""chunk sent: what a chunk's sensor sent, in the run's form {"probe": {"request": count}}

The chunk kept it as {"probe<TAB>request": count}; a run still in flight when the store is upgraded
keeps its counts (the one type of requests sent, ``cybermission.probes.SentRequests``).

Revision ID: 0005_chunk_sent
Revises: 0002_sensors
Create Date: 2026-12-03 11:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005_chunk_sent"
down_revision: str | None = "0002_sensors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = sa.table("chunk", sa.column("id", sa.String), sa.column("sent", sa.JSON))


def _rewrite(flat_to_nested: bool) -> None:
    bind = op.get_bind()
    for chunk_id, sent in bind.execute(sa.select(_CHUNK.c.id, _CHUNK.c.sent)).all():
        if not sent:
            continue
        changed: dict[str, Any] = {}
        if flat_to_nested:
            for key, count in sent.items():
                if not isinstance(count, int):
                    break  # already nested
                probe, _, request = key.partition("\t")
                changed.setdefault(probe, {})[request] = count
        else:
            for probe, requests in sent.items():
                if not isinstance(requests, dict):
                    break  # already flat
                for request, count in requests.items():
                    changed[f"{probe}\t{request}"] = count
        if changed:
            bind.execute(_CHUNK.update().where(_CHUNK.c.id == chunk_id).values(sent=changed))


def upgrade() -> None:
    _rewrite(flat_to_nested=True)


def downgrade() -> None:
    _rewrite(flat_to_nested=False)
