"""archives: item container and raw path, archive table

Revision ID: 0002_archives
Revises: 0001_initial
Created: 2026-11-27 01:32:19.454686
"""

from alembic import op
import sqlalchemy as sa


revision = '0002_archives'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('archives',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('mtime_ns', sa.Integer(), nullable=False),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.Column('complete', sa.Boolean(), nullable=False),
    sa.Column('scanned_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uri')
    )
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('container', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('raw_path', sa.LargeBinary(), nullable=True))
        batch_op.create_index('ix_items_container', ['container'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_container')
        batch_op.drop_column('raw_path')
        batch_op.drop_column('container')

    op.drop_table('archives')

