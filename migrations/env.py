"""Alembic environment for the indexer catalog.

At run time indexer passes an open connection in ``config.attributes["connection"]``; from the
command line (``alembic -x catalog=PATH upgrade head`` or the URL in alembic.ini) one is made here.
"""

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from indexer.store.schema import metadata

config = context.config
target_metadata = metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copy-and-move
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    catalog = context.get_x_argument(as_dictionary=True).get("catalog")
    url = URL.create("sqlite", database=catalog) if catalog else config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    with engine.begin() as connection:
        _run(connection)


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
