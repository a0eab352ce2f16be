"""Limits at every level, end to end: gateway calls from several processes against a simulated
provider process that enforces a limit on the key across models, and a limit the provider reports
being adopted by every process. Real PostgreSQL holds the buckets; the record and the provider's
own counters are what a user would look at.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.config import reset_settings
from app.inference import gateway, targets
from app.inference.keys import key_id
from app.inference.limits import model_bucket
from app.ops.supervisor import wait_http
from app.simulator import max_in_window
from app.state import LimitEvent, LlmCall, session_scope
from tests.integration.conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("services")

# One worker process: `threads` threads per tier, each making `calls` calls through the gateway.
CALLS = r"""
import json, sys, threading
from app.state import get_engine
from app.inference.gateway import complete
threads_per_tier, calls, purpose = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
errors = []
def work(tier, t):
    for i in range(calls):
        try:
            complete([{"role": "user", "content": f"{tier} thread {t}, call {i}"}], tier=tier,
                     purpose=purpose, max_tokens=32)
        except Exception as exc:
            errors.append(repr(exc))
get_engine().connect().close()
print("ready", flush=True)
sys.stdin.readline()
threads = [threading.Thread(target=work, args=(tier, t)) for tier in ("cheap", "capable")
           for t in range(threads_per_tier)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(errors), flush=True)
"""


class Worker:
    """A process calling through the gateway with this test's settings; starts work on `go`."""

    def __init__(self, script: str, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                        env=os.environ.copy())
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def errors(self, timeout: float) -> list[str]:
        try:
            out, err = self.process.communicate(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        assert self.process.returncode == 0, err
        return list(json.loads(out.strip().splitlines()[-1]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def provider(supervisor: Any) -> Iterator[Callable[..., str]]:
    """Starts a simulated provider process with the given flags; its base URL."""
    from app.ops.pools import ProcessSpec

    names: list[str] = []

    def start(*flags: str) -> str:
        port = _free_port()
        argv = [sys.executable, "-m", "app.simulator", "--port", str(port), *flags]
        spec = ProcessSpec(f"levels-{port}", argv)
        supervisor.start(spec)
        names.append(spec.name)
        wait_http(f"http://127.0.0.1:{port}/healthz", 30)
        return f"http://127.0.0.1:{port}"

    yield start
    for name in names:
        supervisor.stop(name, timeout=5)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """SWITCHBOARD_* settings for this test and the processes it starts."""
    for name in ("MODEL_LIMITS", "MODEL_GROUPS", "FALLBACK_MODELS", "SECONDARY_PROVIDER_BASE_URL",
                 "PROVIDER_TOTAL_RPM", "PROVIDER_TOTAL_TPM"):
        monkeypatch.delenv(f"SWITCHBOARD_{name}", raising=False)

    def apply(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"SWITCHBOARD_{name.upper()}", str(value))
        reset_settings()
        targets.providers.cache_clear()
        gateway.reset()

    yield apply
    monkeypatch.undo()
    reset_settings()
    targets.providers.cache_clear()
    gateway.reset()


def _calls(purpose: str) -> list[LlmCall]:
    with session_scope() as session:
        return list(session.scalars(select(LlmCall).where(LlmCall.purpose == purpose)))


def test_an_account_limit_across_two_tiers_sees_no_rejection_from_several_processes(
    provider: Callable[..., str], settings: Callable[..., None]
) -> None:
    # The provider allows the key 120 requests a minute whatever the model, and says so in its
    # headers; the configuration says the same. Per-model buckets alone would give each tier 120.
    base = provider("--account-rpm", "120", "--latency-ms", "50")
    tag = uuid.uuid4().hex[:6]
    cheap, capable = f"cheap-{tag}", f"capable-{tag}"
    settings(provider_base_url=f"{base}/v1", provider_api_keys=f"sk-levels-{tag}", provider_rpm=120,
             provider_tpm=0, provider_headroom=0.1, cheap_model=cheap, capable_model=capable,
             limiter_max_wait_s=60, prices=f"{cheap}=0.1/0.1,{capable}=1/1")
    purpose = f"levels-{tag}"
    # 3 processes x 2 tiers x 3 threads x 9 calls = 162 calls
    workers = [Worker(CALLS, "3", "9", purpose) for _ in range(3)]
    for w in workers:
        w.go()
    assert [w.errors(timeout=400) for w in workers] == [[], [], []]

    stats = httpx.get(f"{base}/admin/stats", timeout=5).json()
    assert stats["by_status"] == {"200": 162} and stats["rate_limited"] == 0
    assert stats["accepted_per_minute_max"] <= 120  # every 60 s window, both models together
    calls = _calls(purpose)
    assert len(calls) == 162 and {c.outcome for c in calls} == {"ok"}
    assert {c.model for c in calls} == {cheap, capable}
    # The record agrees: admissions (call start = recorded end less latency) in any 60 s window,
    # all models together, stay under the key's limit, and the limiter made calls wait for it.
    admitted = sorted(c.created_at.timestamp() - c.latency_ms / 1000 for c in calls)
    assert max_in_window(admitted, 60.0) <= 120
    assert max(c.limiter_wait_ms for c in calls) > 5_000


LEARN = r"""
import json, sys
from app.state import get_engine
from app.inference.gateway import complete
purpose, n = sys.argv[1], int(sys.argv[2])
get_engine().connect().close()
print("ready", flush=True)
sys.stdin.readline()
errors = []
for i in range(n):
    try:
        complete([{"role": "user", "content": f"after learning, call {i}"}], tier="cheap", purpose=purpose,
                 max_tokens=16)
    except Exception as exc:
        errors.append(repr(exc))
print(json.dumps(errors), flush=True)
"""


def test_a_lower_limit_the_provider_reports_is_adopted_by_every_process(
    provider: Callable[..., str], settings: Callable[..., None]
) -> None:
    # The configuration claims 600 a minute; the provider enforces and reports 20 for the model.
    base = provider("--rpm", "20")
    tag = uuid.uuid4().hex[:6]
    model, key = f"learn-{tag}", f"sk-learn-{tag}"
    settings(provider_base_url=f"{base}/v1", provider_api_keys=key, provider_rpm=600, provider_tpm=0,
             provider_headroom=0.1, cheap_model=model, limiter_max_wait_s=60, prices=f"{model}=0.1/0.1")
    first = f"learn-first-{tag}"
    gateway.complete([{"role": "user", "content": "the first call teaches the limit"}], tier="cheap",
                     purpose=first, max_tokens=16)
    kid = key_id(targets.providers()["primary"].keys[0])
    bucket = model_bucket(base.removeprefix("http://"), kid, model, "rpm")
    with session_scope() as session:
        events = session.scalars(select(LimitEvent).where(LimitEvent.bucket == bucket)).all()
    assert [(e.previous_limit, e.learned_limit) for e in events] == [(None, 20)]

    # Processes that never saw those headers apply the learned limit from their first call.
    purpose = f"learn-after-{tag}"
    others = [Worker(LEARN, purpose, "3") for _ in range(2)]
    for other in others:
        other.go()
    assert [other.errors(timeout=200) for other in others] == [[], []]
    stats = httpx.get(f"{base}/admin/stats", timeout=5).json()
    assert stats["rate_limited"] == 0 and stats["by_status"] == {"200": 7}
    # 18 a minute after headroom, a burst of 1: one call every 3.33 s at most, across both
    # processes (the configured 600 would have let all six go at once).
    interval = 60 / 18
    admitted = sorted(c.created_at.timestamp() - c.latency_ms / 1000 for c in _calls(purpose))
    assert len(admitted) == 6
    for i, j in itertools.combinations(range(6), 2):
        assert admitted[j] - admitted[i] >= (j - i) * interval - 0.25, (i, j, admitted)

    shown = json.loads(run_cli("limits", "--json").stdout)
    [row] = [b for b in shown["buckets"] if b["bucket"] == bucket]
    assert (row["level"], row["configured"], row["learned"], row["limit"]) == ("model", None, 20, 20)
    # Used: the calls the record shows for this key and model in the minute before the command.
    assert row["effective_per_minute"] == 18 and 0 < row["used_last_60s"] <= 7
    assert any(e["bucket"] == bucket and e["learned_limit"] == 20 for e in shown["events"])
    assert key not in json.dumps(shown)
