"""schedules (runs, audit) and alerting (channels, policies, deliveries, outbox cursor)

Revision ID: 0002_service
Revises: 0001
Create Date: 2026-11-27 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db


revision: str = '0002_service'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('outbox_cursor',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('last_event_id', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('updated_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_outbox_cursor'))
    )
    op.create_table('schedule_audit',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('schedule_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_audit'))
    )
    op.create_index(op.f('ix_schedule_audit_schedule_id'), 'schedule_audit', ['schedule_id'], unique=False)
    op.create_table('alert_channel',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('organization_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('kind', sa.Enum('webhook', 'syslog', 'mqtt', name='channelkind', native_enum=False, length=32), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_alert_channel_organization_id_organization')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_channel'))
    )
    op.create_index(op.f('ix_alert_channel_name'), 'alert_channel', ['name'], unique=True)
    op.create_index(op.f('ix_alert_channel_organization_id'), 'alert_channel', ['organization_id'], unique=False)
    op.create_table('alert_delivery',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('policy_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('status', sa.Enum('pending', 'delivered', 'failed', name='deliverystatus', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('created_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', cybermission.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['channel_id'], ['alert_channel.id'], name=op.f('fk_alert_delivery_channel_id_alert_channel')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_delivery'))
    )
    op.create_index(op.f('ix_alert_delivery_channel_id'), 'alert_delivery', ['channel_id'], unique=False)
    op.create_index(op.f('ix_alert_delivery_event_id'), 'alert_delivery', ['event_id'], unique=False)
    op.create_index(op.f('ix_alert_delivery_idempotency_key'), 'alert_delivery', ['idempotency_key'], unique=True)
    op.create_index(op.f('ix_alert_delivery_status'), 'alert_delivery', ['status'], unique=False)
    op.create_table('alert_policy',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('organization_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kinds', sa.JSON(), nullable=False),
    sa.Column('min_severity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('site_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['alert_channel.id'], name=op.f('fk_alert_policy_channel_id_alert_channel')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_alert_policy_organization_id_organization')),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_alert_policy_site_id_site')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_policy'))
    )
    op.create_index(op.f('ix_alert_policy_channel_id'), 'alert_policy', ['channel_id'], unique=False)
    op.create_index(op.f('ix_alert_policy_organization_id'), 'alert_policy', ['organization_id'], unique=False)
    op.create_table('schedule',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('scope_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('site_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('targets', sa.JSON(), nullable=False),
    sa.Column('ports', sa.JSON(), nullable=True),
    sa.Column('cron', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('interval_s', sa.Integer(), nullable=True),
    sa.Column('windows', sa.JSON(), nullable=False),
    sa.Column('blackouts', sa.JSON(), nullable=False),
    sa.Column('outside_window', sa.Enum('wait', 'skip', name='outsidewindow', native_enum=False, length=32), nullable=False),
    sa.Column('misfire', sa.Enum('run_once', 'skip', name='misfire', native_enum=False, length=32), nullable=False),
    sa.Column('misfire_grace_s', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('organization_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('next_due_at', cybermission.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('created_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_schedule_organization_id_organization')),
    sa.ForeignKeyConstraint(['scope_id'], ['scope.id'], name=op.f('fk_schedule_scope_id_scope')),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_schedule_site_id_site')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule'))
    )
    op.create_index(op.f('ix_schedule_name'), 'schedule', ['name'], unique=True)
    op.create_index(op.f('ix_schedule_next_due_at'), 'schedule', ['next_due_at'], unique=False)
    op.create_index(op.f('ix_schedule_organization_id'), 'schedule', ['organization_id'], unique=False)
    op.create_index(op.f('ix_schedule_scope_id'), 'schedule', ['scope_id'], unique=False)
    op.create_index(op.f('ix_schedule_site_id'), 'schedule', ['site_id'], unique=False)
    op.create_table('schedule_run',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('schedule_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('trigger', sa.Enum('schedule', 'manual', name='runtrigger', native_enum=False, length=32), nullable=False),
    sa.Column('due_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', cybermission.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.Enum('started', 'waiting', 'skipped_window', 'skipped_blackout', 'skipped_overlap', 'skipped_misfire', 'refused', name='runoutcome', native_enum=False, length=32), nullable=False),
    sa.Column('start_after', cybermission.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('scan_run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.ForeignKeyConstraint(['scan_run_id'], ['scan_run.id'], name=op.f('fk_schedule_run_scan_run_id_scan_run')),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedule.id'], name=op.f('fk_schedule_run_schedule_id_schedule')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_run'))
    )
    op.create_index(op.f('ix_schedule_run_outcome'), 'schedule_run', ['outcome'], unique=False)
    op.create_index(op.f('ix_schedule_run_scan_run_id'), 'schedule_run', ['scan_run_id'], unique=False)
    op.create_index(op.f('ix_schedule_run_schedule_id'), 'schedule_run', ['schedule_id'], unique=False)


def downgrade() -> None:
    # Indexes go with their tables.
    op.drop_table('schedule_run')
    op.drop_table('schedule')
    op.drop_table('alert_policy')
    op.drop_table('alert_delivery')
    op.drop_table('alert_channel')
    op.drop_table('schedule_audit')
    op.drop_table('outbox_cursor')
