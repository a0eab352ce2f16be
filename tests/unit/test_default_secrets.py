"""Outside development mode, every process that uses a development secret or credential refuses to
start, naming the setting and never its value; `--dev` / SWITCHBOARD_DEV=true lets it run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings
from app.default_secrets import DefaultSecrets, problems, refuse_defaults

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("api", "callbacks", "worker", "beat", "flower")
DEV_VALUES = ("switchboard-dev-signing-key", "sk-switchboard-dev", "guest:guest")
PRODUCTION = {
    "broker_url": "amqp://switchboard:s3cret-broker@rabbitmq:5672//",
    "database_url": "postgresql+psycopg://switchboard:s3cret-db@postgres:5432/switchboard",
    "signing_key": "a-long-random-production-signing-key",
    "provider_api_keys": "sk-live-1,sk-live-2",
    "flower_basic_auth": "ops:s3cret-flower",
}


@pytest.fixture(autouse=True)
def _defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built here see the built-in defaults, whatever the test run exported."""
    for name in [k for k in os.environ if k.startswith("SWITCHBOARD_")]:
        monkeypatch.delenv(name)


def _clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without any SWITCHBOARD_* setting: the built-in defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return {**env, **extra}


def test_every_development_default_is_named_for_the_processes_that_use_it() -> None:
    settings = Settings()
    found = {role: " ".join(problems(role, settings)) for role in ROLES}
    for role in ("api", "callbacks"):
        assert all(name in found[role] for name in
                   ("SWITCHBOARD_BROKER_URL", "SWITCHBOARD_DATABASE_URL", "SWITCHBOARD_SIGNING_KEY"))
        assert "SWITCHBOARD_PROVIDER_API_KEYS" not in found[role]  # they call no LLM
    assert "SWITCHBOARD_PROVIDER_API_KEYS" in found["worker"] and "SIGNING_KEY" not in found["worker"]
    assert found["beat"] == "SWITCHBOARD_BROKER_URL uses RabbitMQ's default guest account"
    assert "SWITCHBOARD_FLOWER_BASIC_AUTH" in found["flower"]
    assert not any(value in text for value in DEV_VALUES for text in found.values())


def test_production_values_pass_and_dev_mode_accepts_the_defaults() -> None:
    production = Settings(**PRODUCTION)
    for role in ROLES:
        assert problems(role, production) == []
        refuse_defaults(role, settings=production)
    defaults = Settings()
    with pytest.raises(DefaultSecrets, match="SWITCHBOARD_SIGNING_KEY is the built-in development key"):
        refuse_defaults("api", settings=defaults.model_copy(update={"dev": False}))
    refuse_defaults("api", dev=True, settings=defaults.model_copy(update={"dev": False}))
    refuse_defaults("api", settings=defaults.model_copy(update={"dev": True}))


@pytest.mark.parametrize("setting, value, needle", [
    ("signing_key", "", "SWITCHBOARD_SIGNING_KEY is empty"),
    ("provider_api_keys", "sk-live-1,sk-switchboard-dev", "holds the built-in development key"),
    ("database_url", "postgresql+psycopg://postgres:postgres@db/switchboard", "example postgres password"),
    ("broker_url", "amqp://guest:guest@rabbit.internal:5672//", "default guest account"),
])
def test_one_development_value_among_production_ones_is_refused(setting: str, value: str,
                                                                 needle: str) -> None:
    settings = Settings(**{**PRODUCTION, setting: value})
    role = "worker" if setting == "provider_api_keys" else "api"
    with pytest.raises(DefaultSecrets, match=needle) as refused:
        refuse_defaults(role, settings=settings)
    assert "sk-switchboard-dev" not in str(refused.value) and "guest:guest" not in str(refused.value)


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A process that does not refuse would run until the timeout (and the test fails on it).
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_api_refuses_to_start_with_development_secrets() -> None:
    result = _run([sys.executable, "-m", "app", "api"], _clean_env())
    assert result.returncode == 78, result.stderr
    assert "SWITCHBOARD_SIGNING_KEY is the built-in development key" in result.stderr
    assert "--dev" in result.stderr and not any(v in result.stderr + result.stdout for v in DEV_VALUES)


@pytest.mark.parametrize("queue, setting", [("router", "SWITCHBOARD_PROVIDER_API_KEYS"),
                                            ("callbacks", "SWITCHBOARD_SIGNING_KEY")])
def test_worker_pools_refuse_to_start_with_development_secrets(queue: str, setting: str) -> None:
    from app.ops.pools import worker_argv

    result = _run(worker_argv(queue, 1, "threads"), _clean_env(SWITCHBOARD_PROCESS_NAME=queue))
    assert result.returncode == 78, result.stderr[-2000:]
    assert setting in result.stderr and "SWITCHBOARD_BROKER_URL" in result.stderr
    assert not any(v in result.stderr + result.stdout for v in DEV_VALUES)


def test_beat_refuses_to_start_on_the_guest_account(tmp_path: Path) -> None:
    result = _run([sys.executable, "-m", "celery", "-A", "app.orchestration.celery_app:celery", "beat",
                   "--schedule", str(tmp_path / "schedule")], _clean_env())
    assert result.returncode == 78, result.stderr[-2000:]
    assert "SWITCHBOARD_BROKER_URL uses RabbitMQ's default guest account" in result.stderr


def test_dev_mode_lets_the_api_start_on_the_development_defaults() -> None:
    import socket

    import httpx

    from app.ops.supervisor import wait_http

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _clean_env(SWITCHBOARD_API_PORT=str(port), SWITCHBOARD_API_WORKERS="2")
    process = subprocess.Popen([sys.executable, "-m", "app", "api", "--dev"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/openapi.json", 60)  # served without the database
        document = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).json()
        assert document["openapi"].startswith("3.")
    finally:
        process.terminate()
        process.wait(30)
