"""Alembic environment: runs on the connection handed over by ``cobro.store.db.migrate``."""

from alembic import context

from cobro.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - command-line use
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///cobro.db"
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
