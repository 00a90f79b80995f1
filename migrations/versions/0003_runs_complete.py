"""classification runs: completed_at, set when every item was classified

Revision ID: 0003_runs_complete
Revises: 0002_archives
Created: 2026-11-27 20:45:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003_runs_complete'
down_revision = '0002_archives'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('classification_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('completed_at', sa.Float(), nullable=True))
    # Runs stored before this revision cannot tell whether they finished: those that counted items did.
    op.execute("UPDATE classification_runs SET completed_at = created_at WHERE item_count > 0")


def downgrade() -> None:
    with op.batch_alter_table('classification_runs', schema=None) as batch_op:
        batch_op.drop_column('completed_at')
