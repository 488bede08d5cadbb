"""query indexes: keyset pages and filters of findings, organisation-scoped devices

Revision ID: 0003_query_indexes
Revises: 0002_judge
Create Date: 2026-11-26 16:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_query_indexes"
down_revision: str | None = "0002_judge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINDING_INDEXES = {
    "ix_finding_first_seen_at_id": ["first_seen_at", "id"],
    "ix_finding_last_seen_at_id": ["last_seen_at", "id"],
    "ix_finding_score_id": ["score", "id"],
    "ix_finding_severity_first_seen_at_id": ["severity", "first_seen_at", "id"],
    "ix_finding_status_first_seen_at_id": ["status", "first_seen_at", "id"],
    "ix_finding_status_score_id": ["status", "score", "id"],
}


def upgrade() -> None:
    for name, columns in FINDING_INDEXES.items():
        op.create_index(name, "finding", columns)
    op.create_index(
        "ix_device_organization_id_site_id_id", "device", ["organization_id", "site_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_device_organization_id_site_id_id", table_name="device")
    for name in FINDING_INDEXES:
        op.drop_index(name, table_name="finding")
