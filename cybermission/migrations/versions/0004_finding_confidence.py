"""finding confidence: how sure an advisory finding's match is (high, medium, low), filterable

Revision ID: 0004_finding_confidence
Revises: 0004_advisory_mentions
Create Date: 2026-12-03 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_finding_confidence"
down_revision: str | None = "0004_advisory_mentions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "confidence",
                sa.Enum("high", "medium", "low", name="confidence", native_enum=False, length=32),
                nullable=True,
            )
        )
        batch_op.create_index(batch_op.f("ix_finding_confidence"), ["confidence"], unique=False)
    # Advisory findings stored before carry their confidence in the evidence.
    finding = sa.table(
        "finding",
        sa.column("id", sa.String),
        sa.column("protocol", sa.String),
        sa.column("evidence", sa.JSON),
        sa.column("confidence", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(finding.c.id, finding.c.evidence).where(finding.c.protocol == "advisory")
    ).all()
    for finding_id, evidence in rows:
        level = (evidence or {}).get("confidence")
        if level in ("high", "medium", "low"):
            bind.execute(
                finding.update().where(finding.c.id == finding_id).values(confidence=level)
            )


def downgrade() -> None:
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finding_confidence"))
        batch_op.drop_column("confidence")
