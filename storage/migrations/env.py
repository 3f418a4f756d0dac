"""Alembic environment: runs on the connection `storage.db.migrate` hands over.

Without one it opens its own engine from `sqlalchemy.url`; that is how a developer makes the
next revision (there is no alembic.ini; the configuration is built in code):

    python -c "from alembic import command; from storage.db import alembic_config as c; \
        command.revision(c('sqlite+aiosqlite:///data/dev.db'), 'what changed', autogenerate=True)"

Check the generated file by hand, name it NNNN_what.py, and keep it under versions/.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from storage.db import lock_schema, make_engine
from storage.models import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_own_engine(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lock_schema)
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def run_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade --sql`)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate on the connection handed over, or on a new engine from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no sqlalchemy.url: build the config with storage.db.alembic_config")
    asyncio.run(_run_own_engine(url))


if context.is_offline_mode():
    run_offline()
else:
    run_online()
