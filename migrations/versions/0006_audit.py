"""audit: the latest audit's findings, the decisions a person made on them, perceptual hashes of contents

Revision ID: 0006_audit
Revises: 0005_ingest_leases
Created: 2026-12-03 13:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0006_audit'
down_revision = '0005_ingest_leases'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_findings',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('audit_decisions',
    sa.Column('finding_id', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('label', sa.Text(), nullable=True),
    sa.Column('finding', sa.Text(), nullable=False),
    sa.Column('labels_key', sa.String(length=64), nullable=False),
    sa.Column('labels_source', sa.Text(), nullable=False),
    sa.Column('decided_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('finding_id')
    )
    # A plain ADD COLUMN (no table rebuild): existing rows get NULL, filled in by the audit when needed.
    op.add_column('embeddings', sa.Column('phash', sa.Integer().with_variant(sa.BigInteger(), 'postgresql'),
                                          nullable=True))


def downgrade() -> None:
    op.drop_column('embeddings', 'phash')
    op.drop_table('audit_decisions')
    op.drop_table('audit_findings')
