"""Pieces of the engine that need no services: settings, topology, cost, errors, Procfile."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from app.config import Settings
from app.inference.cost import call_cost
from app.inference.errors import FailureClass, classify_status
from app.inference.keys import KeyRing, key_id
from app.ops.pools import procfile
from app.orchestration.topology import all_queues, pool_queues, work_queue
from workflows.engine import Workflow


def test_every_work_queue_dead_letters_into_its_own_dlq() -> None:
    names = {q.name for q in all_queues()}
    assert {"router", "billing", "technical", "router.dlq", "billing.dlq", "technical.dlq"} <= names
    args = work_queue("billing").queue_arguments
    assert args == {
        "x-dead-letter-exchange": "switchboard.dlx",
        "x-dead-letter-routing-key": "billing.dlq",
        "x-max-priority": 9,
    }


def test_settings_parse_keys_and_prices_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_PROVIDER_API_KEYS", "sk-one, sk-two")
    monkeypatch.setenv("SWITCHBOARD_PRICES", "m1=1/2,m2=0.5/1.5")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.provider_api_keys] == ["sk-one", "sk-two"]
    assert "sk-one" not in repr(settings)
    assert settings.prices["m2"] == (Decimal("0.5"), Decimal("1.5"))
    with pytest.raises(ValueError, match="unknown model tier 'huge'"):
        settings.model_for_tier("huge")


def test_bad_price_entry_says_what_it_should_look_like(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_PRICES", "m1=1")
    with pytest.raises(ValueError, match="model=INPUT/OUTPUT"):
        Settings()


def test_cost_uses_the_price_table() -> None:
    # sim-large: $2.50 in, $10.00 out per million tokens.
    assert call_cost("sim-large", 1_000_000, 0) == Decimal("2.500000")
    assert call_cost("sim-large", 2000, 500) == Decimal("0.010000")
    # A model with no price: unknown (None, NULL in the record), never $0; no tokens cost nothing.
    assert call_cost("unpriced-model", 1000, 1000) is None
    assert call_cost("unpriced-model", 0, 0) == Decimal(0)


def test_failure_classes() -> None:
    assert classify_status(429, "") is FailureClass.RATE_LIMITED
    assert classify_status(503, "") is FailureClass.SERVER
    assert classify_status(401, "") is FailureClass.AUTH
    assert classify_status(400, '{"code": "context_length_exceeded"}') is FailureClass.CONTEXT_LENGTH
    assert classify_status(400, "bad") is FailureClass.BAD_REQUEST


def test_keys_rotate_and_are_named_by_id_only() -> None:
    from pydantic import SecretStr

    ring = KeyRing([SecretStr("sk-aaa"), SecretStr("sk-bbb")])
    ids = [ring.next()[0] for _ in range(4)]
    assert ids[0] != ids[1] and ids[:2] == ids[2:]
    assert all(i.startswith("key-") and "sk-" not in i for i in ids)
    assert key_id(SecretStr("sk-aaa")) == ids[0]


def test_committed_procfile_is_generated_from_the_specialists() -> None:
    committed = (Path(__file__).parents[2] / "Procfile").read_text()
    assert committed == procfile(), "run `switchboard procfile --write` after adding a specialist"
    for name in ("router", "billing", "technical"):
        assert (f"\n{name}: SWITCHBOARD_PROCESS_NAME={name} "
                "SWITCHBOARD_SPECIALISTS=${SWITCHBOARD_SPECIALISTS:-specialists} "
                f"SWITCHBOARD_METRICS_PORT=${{SWITCHBOARD_{name.upper()}_METRICS_PORT:-") in committed
        assert f" celery -A app.orchestration.celery_app:celery worker -Q {','.join(pool_queues(name))} " in committed


def test_workflow_declaration_errors_are_caught_early() -> None:
    flow = Workflow("example")

    @flow.step()
    def first(ctx: object) -> dict[str, object]:
        return {}

    with pytest.raises(ValueError, match="unknown steps"):
        flow.step(after=("missing",))(lambda ctx: {})
    with pytest.raises(ValueError, match="already has a step"):
        flow.step(name="first")(lambda ctx: {})


def test_a_new_specialist_is_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import specialists
    from app.orchestration import classifier, registry, topology

    (tmp_path / "shipping.py").write_text(
        "from app.orchestration.specialist import Specialist\n"
        "SPECIALIST = Specialist(name='shipping', description='Deliveries and tracking',\n"
        "    system_prompt='You help with deliveries.',\n"
        "    routing_examples=('where is my parcel', 'tracking number does not work', 'package arrived damaged',\n"
        "                      'delivery is late by a week', 'can I change the shipping address'))\n"
    )
    monkeypatch.setattr(specialists, "__path__", [*specialists.__path__, str(tmp_path)])
    registry.specialists.cache_clear()
    classifier.classifier.cache_clear()
    try:
        assert "shipping" in registry.specialists()
        assert {"shipping", "shipping.dlq"} <= {q.name for q in topology.all_queues()}
        assert re.search(r"\nshipping: SWITCHBOARD_PROCESS_NAME=shipping \S+ SWITCHBOARD_METRICS_PORT="
                         r"\$\{SWITCHBOARD_SHIPPING_METRICS_PORT:-\d+\} celery -A app.orchestration.celery_app:celery worker "
                         r"-Q shipping ", procfile())
        assert classifier.classifier().predict("my parcel tracking shows no movement").specialist == "shipping"
    finally:
        monkeypatch.undo()
        registry.specialists.cache_clear()
        classifier.classifier.cache_clear()


def test_the_engine_and_the_app_client_share_one_venv_without_clashing() -> None:
    """Distribution `switchboard` imports as `app` (and workflows, specialists); `switchboard-client`
    alone provides the import name `switchboard`."""
    from importlib.metadata import packages_distributions

    import switchboard

    owners = packages_distributions()
    assert set(owners["switchboard"]) == {"switchboard-client"}
    assert set(owners["app"]) == {"switchboard"}
    assert Path(switchboard.__file__).parent.parent.parent.name == "python"  # clients/python/src/switchboard


def test_the_checkpoint_statements_stay_within_psycopgs_parse_cache() -> None:
    # Longer statements are parsed again on every execution; these run for most steps of every
    # request, so growing past the limit costs CPU on the hot path without any test noticing.
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH
    from sqlalchemy.dialects import postgresql

    from app.inference import call_log
    from workflows.engine import checkpoints

    for statement in (checkpoints._UPSERT_STEP_WITH_CALLS, call_log._WRITE):
        sql = str(statement.compile(dialect=postgresql.psycopg.dialect()))
        # As executed: the call ids expand to a parameter each (a checkpoint completes 1-4 calls).
        marker = "__[POSTCOMPILE_call_ids]"
        assert marker in sql
        sql = sql.replace(marker, ", ".join(f"%(call_ids_{i})s" for i in range(1, 5)))
        assert len(sql) <= MAX_CACHED_STATEMENT_LENGTH, len(sql)
        assert "--" not in sql
