"""judge: finding transitions (audit), risk acceptance expiry, advisories, known exploited CVEs

Revision ID: 0002_judge
Revises: 0001
Create Date: 2026-11-26 15:39:23.238271
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db


revision: str = '0002_judge'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('advisory',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('cves', sa.JSON(), nullable=False),
    sa.Column('cvss_score', sa.Float(), nullable=True),
    sa.Column('cvss_vector', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('published_at', cybermission.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', cybermission.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revision', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kev', sa.Boolean(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('imported_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_advisory'))
    )
    with op.batch_alter_table('advisory', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_advisory_kev'), ['kev'], unique=False)

    op.create_table('known_exploited',
    sa.Column('cve_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('vendor', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('product', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('date_added', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('imported_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('cve_id', name=op.f('pk_known_exploited'))
    )
    op.create_table('advisory_product',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('advisory_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('product_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('vendor', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('vendor_key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('product', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('branch_path', sa.JSON(), nullable=False),
    sa.Column('cves', sa.JSON(), nullable=False),
    sa.Column('cvss_score', sa.Float(), nullable=True),
    sa.Column('cvss_vector', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.ForeignKeyConstraint(['advisory_id'], ['advisory.id'], name=op.f('fk_advisory_product_advisory_id_advisory')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_advisory_product'))
    )
    with op.batch_alter_table('advisory_product', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_advisory_product_advisory_id'), ['advisory_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_advisory_product_vendor_key'), ['vendor_key'], unique=False)

    op.create_table('finding_transition',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('finding_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('from_status', sa.Enum('open', 'acknowledged', 'risk-accepted', 'false-positive', 'resolved', name='findingstatus', native_enum=False, length=32), nullable=True),
    sa.Column('to_status', sa.Enum('open', 'acknowledged', 'risk-accepted', 'false-positive', 'resolved', name='findingstatus', native_enum=False, length=32), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('until', cybermission.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('scan_run_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['finding_id'], ['finding.id'], name=op.f('fk_finding_transition_finding_id_finding')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_finding_transition'))
    )
    with op.batch_alter_table('finding_transition', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_finding_transition_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_finding_transition_finding_id'), ['finding_id'], unique=False)

    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accepted_until', cybermission.db.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_column('accepted_until')

    with op.batch_alter_table('finding_transition', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_finding_transition_finding_id'))
        batch_op.drop_index(batch_op.f('ix_finding_transition_at'))

    op.drop_table('finding_transition')
    with op.batch_alter_table('advisory_product', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_advisory_product_vendor_key'))
        batch_op.drop_index(batch_op.f('ix_advisory_product_advisory_id'))

    op.drop_table('advisory_product')
    op.drop_table('known_exploited')
    with op.batch_alter_table('advisory', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_advisory_kev'))

    op.drop_table('advisory')
