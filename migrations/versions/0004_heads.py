"""heads: zero-shot heads trained on stored embeddings

Revision ID: 0004_heads
Revises: 0003_runs_complete
Created: 2026-11-28 09:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004_heads'
down_revision = '0003_runs_complete'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('heads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('classes', sa.Text(), nullable=False),
    sa.Column('hparams', sa.Text(), nullable=False),
    sa.Column('model_key', sa.String(length=64), nullable=False),
    sa.Column('figures', sa.Text(), nullable=False),
    sa.Column('weights', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('heads')
