"""metadata: EXIF date taken, camera, GPS, captions on items; full text over captions and paths

Revision ID: 0007_metadata
Revises: 0006_audit
Created: 2026-12-03 13:00:00

Columns are added in place (ALTER TABLE ADD COLUMN, no copy of ``items``). Archives are marked as read
incompletely, so that the next ingest lists their members once more (no member is decoded or embedded
again): that is when the captions of WebDataset samples already in the index are read.
"""

from alembic import op
import sqlalchemy as sa

from indexer.store import fulltext


revision = '0007_metadata'
down_revision = '0006_audit'
branch_labels = None
depends_on = None

Int64 = sa.Integer().with_variant(sa.BigInteger(), 'postgresql')
COLUMNS = [('taken', sa.String(length=19)), ('camera', sa.String(length=128)), ('lat', sa.Float()),
           ('lon', sa.Float()), ('meta_at', sa.Float()), ('meta_notes', sa.Text()), ('caption', sa.Text()),
           ('caption_stamp', Int64)]


# Columns a --where compares with < and > often enough to deserve an index (taken has its own above).
INDEXED = ('size', 'lat', 'lon')


def _execute(statement: str) -> None:
    op.execute(sa.text(statement))


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column('items', sa.Column(name, type_, nullable=True))
    op.create_index('ix_items_taken', 'items', ['taken'])
    for column in INDEXED:  # a selective --where on them finds its items without reading the table
        op.create_index(f'ix_items_{column}', 'items', [column])
    op.create_index('ix_items_meta_missing', 'items', ['id'], sqlite_where=sa.text('meta_at IS NULL'),
                    postgresql_where=sa.text('meta_at IS NULL'))
    op.execute(sa.text('UPDATE archives SET complete = :no').bindparams(no=False))
    fulltext.create(op.get_bind().dialect.name, _execute)


def downgrade() -> None:
    fulltext.drop(op.get_bind().dialect.name, _execute)
    op.drop_index('ix_items_meta_missing', table_name='items')
    op.drop_index('ix_items_taken', table_name='items')
    for column in INDEXED:
        op.drop_index(f'ix_items_{column}', table_name='items')
    with op.batch_alter_table('items') as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
