"""Alembic's entry point. idp.store.schema runs it with a connection it has already opened and locked, so this
file never reads a URL or an ini file of its own."""

from __future__ import annotations

from alembic import context

from idp.store.models import Base

connection = context.config.attributes["connection"]
# Batch mode: SQLite alters a table by copying it, which plain ALTER statements cannot express.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
