"""Alembic's environment for every history `switchboard migrate` applies (app/ops/migrate.py): the
engine's (version table `alembic_version`) and each specialist's (its own version table)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from app.config import get_settings
from app.state.models import Base
from app.state.session import driver_args

VERSION_TABLE = context.config.attributes.get("version_table", "alembic_version")
# Autogenerate compares against the engine's models only for the engine's own history.
target_metadata = Base.metadata if VERSION_TABLE == "alembic_version" else None


def run_migrations_online() -> None:
    url = context.config.attributes.get("url") or get_settings().database_url.get_secret_value()
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=driver_args())
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                          version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `switchboard migrate` against the database")
run_migrations_online()
