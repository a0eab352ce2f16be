"""The schema comes only from Alembic, and the revisions describe exactly what the models say."""

from __future__ import annotations

import uuid

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from app.db.migrate import alembic_config
from app.db.models import Base
from tests.support.services import scratch_database


def test_upgrade_matches_models_and_downgrade_is_clean(services: object) -> None:
    server = services.database_url  # type: ignore[attr-defined]
    with scratch_database(server, f"sb_mig_{uuid.uuid4().hex[:8]}") as url:
        config = alembic_config(url)
        command.upgrade(config, "head")
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"

        command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        command.upgrade(config, "head")
        assert "requests" in inspect(engine).get_table_names()
        engine.dispose()
