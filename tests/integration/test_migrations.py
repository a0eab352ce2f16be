"""The schema comes only from Alembic: the engine's history creates the engine's tables and nothing
else, each bundled specialist's history its own, the revisions describe exactly what the models say,
and a database from before the split upgrades with its rows intact."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from app.ops.migrate import alembic_config, current, histories, upgrade
from app.state.models import Base
from tests.support.legacy_schema import create_business_tables
from tests.support.services import scratch_database

BILLING_TABLES = {"accounts", "invoices", "refunds"}
TECHNICAL_TABLES = {"kb_articles", "service_status"}


@pytest.fixture
def database(services: object) -> Iterator[tuple[str, Engine]]:
    server = services.database_url  # type: ignore[attr-defined]
    with scratch_database(server, f"sb_mig_{uuid.uuid4().hex[:8]}") as url:
        engine = create_engine(url, poolclass=NullPool)
        yield url, engine
        engine.dispose()


def _diff(engine: Engine, metadata: MetaData, tables: set[str]) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                # Compare only this history's own tables: the database also holds the others'.
                "include_name": lambda name, kind, _parent: kind != "table" or name in tables,
            },
        )
        return list(compare_metadata(context, metadata))


def test_the_engines_history_creates_only_the_engines_tables(database: tuple[str, Engine]) -> None:
    url, engine = database
    config = alembic_config(url)
    command.upgrade(config, "head")
    tables = set(inspect(engine).get_table_names())
    assert not tables & (BILLING_TABLES | TECHNICAL_TABLES)
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert _diff(engine, Base.metadata, set(Base.metadata.tables)) == []

    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}


def test_each_specialists_history_matches_its_models_and_downgrades_cleanly(
    database: tuple[str, Engine],
) -> None:
    from specialists.billing.models import BillingBase
    from specialists.technical.models import TechnicalBase

    url, engine = database
    upgrade(url)
    assert {name: at["revision"] == at["head"] for name, at in current(url).items()} == {
        "engine": True,
        "billing": True,
        "technical": True,
    }
    tables = set(inspect(engine).get_table_names())
    assert {
        "alembic_version_billing",
        "alembic_version_technical",
    } | BILLING_TABLES | TECHNICAL_TABLES <= tables
    assert _diff(engine, BillingBase.metadata, BILLING_TABLES) == []
    assert _diff(engine, TechnicalBase.metadata, TECHNICAL_TABLES) == []

    for name, config in reversed(histories(url).items()):
        if name != "engine":
            command.downgrade(config, "base")
    left = set(inspect(engine).get_table_names())
    assert not left & (BILLING_TABLES | TECHNICAL_TABLES)
    upgrade(url)
    assert BILLING_TABLES | TECHNICAL_TABLES <= set(inspect(engine).get_table_names())


ROWS = {
    "accounts": "SELECT id, email, name, plan, status FROM accounts ORDER BY id",
    "invoices": "SELECT id, account_id, amount_usd, status, period FROM invoices ORDER BY id",
    "refunds": "SELECT invoice_id, request_id, amount_usd, reason FROM refunds ORDER BY id",
    "kb_articles": "SELECT slug, title, body FROM kb_articles ORDER BY id",
    "service_status": "SELECT component, status, message FROM service_status ORDER BY component",
}


def _legacy_rows(conn: object) -> None:
    run = conn.execute  # type: ignore[attr-defined]
    run(
        text(
            "INSERT INTO accounts (id, email, name, plan, status) VALUES "
            "(1, 'ada@example.com', 'Ada', 'pro', 'active'), "
            "(2, 'bo@example.com', 'Bo', 'starter', 'suspended')"
        )
    )
    run(
        text(
            "INSERT INTO invoices (id, account_id, amount_usd, status, period, issued_at) VALUES "
            "('INV-1', 1, 49.00, 'refunded', '2026-10', now()), "
            "('INV-2', 1, 49.00, 'paid', '2026-11', now()), "
            "('INV-3', 2, 29.00, 'open', '2026-11', now())"
        )
    )
    run(
        text(
            "INSERT INTO requests (id, tenant, text) VALUES "
            "('00000000-0000-0000-0000-000000000001', 'default', "
            "'refund INV-1')"
        )
    )
    run(
        text(
            "INSERT INTO refunds (invoice_id, request_id, amount_usd, reason) VALUES "
            "('INV-1', '00000000-0000-0000-0000-000000000001', 49.00, 'double charge')"
        )
    )
    run(
        text(
            "INSERT INTO kb_articles (id, slug, title, body) VALUES (1, 'sso', 'SSO setup', 'Use SAML.'), "
            "(2, 'webhooks', 'Webhooks', 'Retries for 24 hours.')"
        )
    )
    run(
        text(
            "INSERT INTO service_status (component, status, message) VALUES ('api', 'degraded', 'slow'), "
            "('login', 'operational', '')"
        )
    )


def _snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {table: [tuple(row) for row in conn.execute(text(sql))] for table, sql in ROWS.items()}


def test_a_database_from_before_the_split_upgrades_with_its_rows_intact(database: tuple[str, Engine]) -> None:
    url, engine = database
    # Switchboard 0.1.0: the engine's history at 0005, the demo tables its first revision made, rows in them.
    command.upgrade(alembic_config(url), "0005")
    with engine.begin() as conn:
        create_business_tables(conn)
        _legacy_rows(conn)
    before = _snapshot(engine)
    assert before["refunds"] == [
        ("INV-1", "00000000-0000-0000-0000-000000000001", Decimal("49.00"), "double charge")
    ]

    upgrade(url)
    assert all(at["revision"] == at["head"] for at in current(url).values()), current(url)
    assert _snapshot(engine) == before
    # The rows are now owned (billing_0002, technical_0002): the demo tenant's, each account's
    # customer its e-mail, its invoices and refunds that customer's.
    assert _owners(engine) == OWNERS
    upgrade(url)  # and again: nothing to do, nothing lost
    assert _snapshot(engine) == before and _owners(engine) == OWNERS


OWNERS = {
    "accounts": [("default", "ada@example.com"), ("default", "bo@example.com")],
    "invoices": [
        ("default", "ada@example.com"),
        ("default", "ada@example.com"),
        ("default", "bo@example.com"),
    ],
    "refunds": [("default", "ada@example.com")],
    "kb_articles": [("default",), ("default",)],
    "service_status": [("default",), ("default",)],
}


def _owners(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    order = {
        "accounts": "id",
        "invoices": "id",
        "refunds": "id",
        "kb_articles": "id",
        "service_status": "component",
    }
    with engine.connect() as conn:
        return {
            table: [
                tuple(row)
                for row in conn.execute(
                    text(
                        f"SELECT tenant{', customer' if table in BILLING_TABLES else ''} FROM {table} "
                        f"ORDER BY {order[table]}"
                    )
                )
            ]
            for table in OWNERS
        }


def test_a_database_that_owned_its_rows_in_the_engines_history_upgrades_untouched(
    database: tuple[str, Engine],
) -> None:
    """Between the authority work and the split, the engine's revision 0009_business_rows_owned
    made the rows owned; it is empty now, and the specialists' own revisions must not redo it."""
    url, engine = database
    command.upgrade(alembic_config(url), "0008_conversations_per_tenant")
    with engine.begin() as conn:
        create_business_tables(conn)
        _legacy_rows(conn)
    # What 0009_business_rows_owned did there, done by the same statements, then stamped as the
    # engine's: no specialist version table yet.
    for name, config in histories(url).items():
        if name != "engine":
            command.upgrade(config, "head")
    with engine.begin() as conn:
        for name in ("billing", "technical"):
            conn.execute(text(f"DROP TABLE alembic_version_{name}"))
    command.stamp(alembic_config(url), "0009_business_rows_owned")
    before, owners = _snapshot(engine), _owners(engine)
    assert owners == OWNERS

    upgrade(url)
    assert all(at["revision"] == at["head"] for at in current(url).values()), current(url)
    assert _snapshot(engine) == before and _owners(engine) == OWNERS
