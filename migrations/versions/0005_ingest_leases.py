"""ingest leases (one ingest per index across machines); 64-bit sizes and times on PostgreSQL

Revision ID: 0005_ingest_leases
Revises: 0004_heads
Created: 2026-11-28 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005_ingest_leases'
down_revision = '0004_heads'
branch_labels = None
depends_on = None

# (table, column) that hold byte sizes and nanosecond times: BIGINT where INTEGER is 32 bits.
WIDE_COLUMNS = [('items', 'size'), ('items', 'mtime_ns'), ('archives', 'size'), ('archives', 'mtime_ns')]


def upgrade() -> None:
    op.create_table('ingest_leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('acquired_at', sa.Float(), nullable=False),
    sa.Column('heartbeat_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    if op.get_bind().dialect.name == 'postgresql':  # SQLite's INTEGER is 64 bits already
        for table, column in WIDE_COLUMNS:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                            existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table, column in WIDE_COLUMNS:
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                            existing_nullable=False)
    op.drop_table('ingest_leases')
