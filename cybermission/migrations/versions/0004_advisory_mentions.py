"""advisory mentions: the sentences of an advisory's title, notes and remediations that name
models, weaker evidence for devices its product tree misses

Revision ID: 0004_advisory_mentions
Revises: 0003_query_indexes
Create Date: 2026-12-03 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_advisory_mentions"
down_revision: str | None = "0003_query_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("advisory", schema=None) as batch_op:
        # Advisories imported before keep no sentences until they are imported again.
        batch_op.add_column(sa.Column("mentions", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("advisory", schema=None) as batch_op:
        batch_op.alter_column("mentions", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("advisory", schema=None) as batch_op:
        batch_op.drop_column("mentions")
