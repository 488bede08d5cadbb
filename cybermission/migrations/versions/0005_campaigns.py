"""campaigns: territory campaigns (an advisory, a rule, a protocol, a vendor) and the notices
telling each affected organisation (cybermission/territory/README.md)

Revision ID: 0005_campaigns
Revises: 0005_sectors
Create Date: 2026-12-03 11:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db


revision: str = "0005_campaigns"
down_revision: str | None = "0005_sectors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "advisory",
                "rule",
                "protocol",
                "vendor",
                name="campaignkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("opened_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("opened_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("closed_at", cybermission.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
        sa.UniqueConstraint("kind", "subject", name=op.f("uq_campaign_kind_subject")),
    )
    op.create_table(
        "campaign_notice",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("campaign_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("notified_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_campaign_notice_campaign_id_campaign")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_campaign_notice_organization_id_organization"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_notice")),
        sa.UniqueConstraint(
            "campaign_id",
            "organization_id",
            name=op.f("uq_campaign_notice_campaign_id_organization_id"),
        ),
    )
    with op.batch_alter_table("campaign_notice", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_notice_campaign_id"), ["campaign_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_campaign_notice_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("campaign_notice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_notice_organization_id"))
        batch_op.drop_index(batch_op.f("ix_campaign_notice_campaign_id"))

    op.drop_table("campaign_notice")
    op.drop_table("campaign")
