"""Alembic environment: runs the migrations of the posts service on a blocking connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from kairos_api.adapters.orm import Base

config = context.config


def run() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Several api replicas may start at once: one migrates, the others wait here and
                # then find the schema at head (the lock ends with the transaction).
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('kairos_api'))"))
            context.run_migrations()
    engine.dispose()


run()
