"""Flower as operators run it: basic auth, and the broker API so every queue's depth shows."""

from __future__ import annotations

import os
import sys

from kombu.utils.url import url_to_parts

from app.config import get_settings
from app.default_secrets import DefaultSecrets, refuse_defaults


def broker_api_url(management_port: int = 15672) -> str:
    _scheme, host, _port, user, password, _vhost, _ = url_to_parts(
        get_settings().broker_url.get_secret_value()
    )
    return f"http://{user or 'guest'}:{password or 'guest'}@{host or '127.0.0.1'}:{management_port}/api/"


def flower_env(dev: bool = False) -> dict[str, str]:
    """Credentials travel in the environment, never on the command line where `ps` shows them."""
    settings = get_settings()
    auth = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else ""
    # Without credentials (or on RabbitMQ's guest account) only in development mode.
    refuse_defaults("flower", dev=dev, settings=settings)
    env = {
        "FLOWER_BROKER_API": broker_api_url(),
        "FLOWER_PORT": str(settings.flower_port),
        "FLOWER_ADDRESS": settings.flower_address,
    }
    if auth:
        env["FLOWER_BASIC_AUTH"] = auth
    return env


def flower_argv() -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "app.orchestration.celery_app:celery", "flower"]


def run_flower(dev: bool = False) -> int:
    try:
        os.environ.update(flower_env(dev))
    except DefaultSecrets as exc:
        raise SystemExit(f"switchboard: {exc}") from None
    argv = flower_argv()
    os.execv(argv[0], argv)  # replaces this process: nothing after it runs
