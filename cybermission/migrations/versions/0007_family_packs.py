"""family packs: advisory family data the coordinator published in versions and organisations'
decisions on them (cybermission/findings/advisories/family_packs.py)

Revision ID: 0007_family_packs
Revises: 0006_rule_packs
Create Date: 2026-12-03 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db


revision: str = "0007_family_packs"
down_revision: str | None = "0006_rule_packs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "family_pack",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("notes", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("published_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("published_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_pack")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_family_pack_name_version")),
    )
    with op.batch_alter_table("family_pack", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_family_pack_name"), ["name"], unique=False)
    op.create_table(
        "family_pack_decision",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("pack_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column(
            "decision",
            sa.Enum("adopt", "decline", name="packdecision", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("pinned_version", sa.Integer(), nullable=True),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("decided_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_family_pack_decision_organization_id_organization"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_pack_decision")),
    )
    with op.batch_alter_table("family_pack_decision", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_family_pack_decision_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_family_pack_decision_sequence"), ["sequence"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("family_pack_decision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_family_pack_decision_sequence"))
        batch_op.drop_index(batch_op.f("ix_family_pack_decision_organization_id"))
    op.drop_table("family_pack_decision")
    with op.batch_alter_table("family_pack", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_family_pack_name"))
    op.drop_table("family_pack")
