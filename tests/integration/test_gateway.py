"""The inference gateway end to end: `gateway.complete()` against real simulated-provider processes,
with the run's PostgreSQL holding the shared state (limiter, breaker, cache, disabled keys) and the
record a user reads afterwards (llm_calls, provider_keys, breaker_events, rate_buckets).

Isolation: every test gets a fresh model name (breaker, limiter and cache state are per model) and
fresh API-key values; a test that needs a differently configured provider starts its own simulator
process. Settings change for one test only, through the `gw` fixture, which restores the
environment and clears every cache holding settings when the test ends.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from app.config import reset_settings
from app.inference import gateway, targets
from app.inference.cost import call_cost
from app.inference.errors import FailureClass, ProviderError
from app.inference.gateway import Deferred, complete
from app.inference.keys import key_id
from app.inference.limits import model_bucket
from app.simulator import key_fingerprint
from app.state import BreakerEvent, LlmCall, ProviderKey, RateBucket, Request, StepRun, session_scope
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.usefixtures("services")

PRICE_IN, PRICE_OUT = Decimal("1.50"), Decimal("6.00")  # USD per million tokens, for the test models
# Every table a provider key could leak into.
STATE_TABLES = ("llm_calls", "provider_keys", "breaker_events", "circuit_breakers", "rate_buckets", "llm_cache")


# --- simulated providers ---------------------------------------------------------------------------


class Sim:
    """One simulated provider process, seen through its admin API."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.v1 = f"{base}/v1"
        self.host = base.removeprefix("http://")  # what the gateway names buckets and breakers by

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/admin/stats", timeout=5).json()

    def faults(self, **changes: Any) -> None:
        httpx.post(f"{self.base}/admin/faults", json=changes, timeout=5).raise_for_status()

    def seen(self, model: str) -> int:
        """Requests for `model` that got past the key check."""
        return int(self.stats()["by_model"].get(model, 0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"simulator at {base} did not start"
        time.sleep(0.1)


@pytest.fixture
def main_sim(simulator: str) -> Sim:
    """The run's shared simulator (the default provider); faults on it go through `faults`."""
    return Sim(simulator)


@pytest.fixture
def start_sim(supervisor: Any) -> Iterator[Callable[..., Sim]]:
    """Starts extra simulator processes (`start_sim("keys", "--api-keys", "sk-x")`) on free ports;
    they are stopped when the test ends."""
    from app.ops.pools import ProcessSpec

    names: list[str] = []

    def start(label: str, *args: str) -> Sim:
        port = _free_port()
        spec = ProcessSpec(f"gw-{label}-{port}", [sys.executable, "-m", "app.simulator", "--port", str(port), *args])
        supervisor.start(spec)
        names.append(spec.name)
        sim = Sim(f"http://127.0.0.1:{port}")
        _wait_healthy(sim.base)
        return sim

    yield start
    for name in names:
        supervisor.stop(name, timeout=5)


# --- settings for one test -------------------------------------------------------------------------


def _refresh() -> None:
    reset_settings()
    targets.providers.cache_clear()
    gateway.reset()


class Gateway:
    """SWITCHBOARD_* settings for one test, with a fresh model and a fresh API key."""

    def __init__(self, main: Sim) -> None:
        self._patch = pytest.MonkeyPatch()
        tag = uuid.uuid4().hex[:6]
        self.model = f"m-{tag}"
        self.other = f"m-{tag}-b"
        self.key = f"sk-test-{uuid.uuid4().hex}"
        self.set(
            provider_base_url=main.v1,
            provider_api_keys=self.key,
            provider_rpm=0,
            provider_tpm=0,
            cheap_model=self.model,
            prices=f"{self.model}={PRICE_IN}/{PRICE_OUT},{self.other}={PRICE_IN}/{PRICE_OUT}",
            provider_max_retries=3,
            breaker_cooldown_s=1,
        )
        for name in ("SWITCHBOARD_FALLBACK_MODELS", "SWITCHBOARD_SECONDARY_PROVIDER_BASE_URL",
                     "SWITCHBOARD_SECONDARY_PROVIDER_API_KEYS"):
            self._patch.delenv(name, raising=False)
        _refresh()

    def set(self, **settings: object) -> None:
        for name, value in settings.items():
            self._patch.setenv(f"SWITCHBOARD_{name.upper()}", str(value))
        _refresh()

    def close(self) -> None:
        self._patch.undo()
        _refresh()


@pytest.fixture
def gw(main_sim: Sim) -> Iterator[Gateway]:
    g = Gateway(main_sim)
    try:
        yield g
    finally:
        g.close()


# --- calls and the record --------------------------------------------------------------------------


def _purpose() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


def ask(content: str, purpose: str, **kwargs: Any) -> Any:
    return complete([{"role": "user", "content": content}], tier="cheap", purpose=purpose, **kwargs)


def rows(purpose: str) -> list[LlmCall]:
    with session_scope() as session:
        return list(session.scalars(select(LlmCall).where(LlmCall.purpose == purpose).order_by(LlmCall.id)))


def new_request(text: str) -> str:
    """A request row for calls to be recorded against; its id."""
    with session_scope() as session:
        request = Request(tenant="gw-test", text=text)
        session.add(request)
        session.flush()
        return request.id


def events(target: str) -> list[str]:
    with session_scope() as session:
        found = session.execute(
            select(BreakerEvent.from_state, BreakerEvent.to_state).where(BreakerEvent.target == target)
            .order_by(BreakerEvent.id)
        ).all()
    return [f"{e.from_state}->{e.to_state}" for e in found]


def rows_mentioning(secret: str) -> dict[str, int]:
    """Rows of each state table whose text form contains `secret` anywhere."""
    with session_scope() as session:
        return {
            table: session.scalar(text(f"SELECT count(*) FROM {table} AS r WHERE r::text LIKE :p"), {"p": f"%{secret}%"})
            for table in STATE_TABLES
        }


def kid(value: str) -> str:
    return key_id(SecretStr(value))


ONE_CALL = r"""
import json, sys
from app.state import get_engine
from app.inference.errors import ProviderError
from app.inference.gateway import Deferred, complete
get_engine().connect().close()  # warm: the call itself starts at "go"
print("ready", flush=True)
sys.stdin.readline()
try:
    complete([{"role": "user", "content": sys.argv[1]}], tier="cheap", purpose=sys.argv[2])
    print(json.dumps({"outcome": "ok"}), flush=True)
except Deferred as exc:
    print(json.dumps({"outcome": "deferred", "retry_in_s": exc.retry_in_s}), flush=True)
except ProviderError as exc:
    print(json.dumps({"outcome": str(exc.kind)}), flush=True)
"""

MANY_CALLS = r"""
import json, sys, threading
from app.state import get_engine
from app.inference.gateway import complete
n, purpose = int(sys.argv[1]), sys.argv[2]
errors = []
def one(i):
    try:
        complete([{"role": "user", "content": f"second process, call {i}"}], tier="cheap", purpose=purpose)
    except Exception as exc:
        errors.append(repr(exc))
get_engine().connect().close()
print("ready", flush=True)
sys.stdin.readline()
threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(errors), flush=True)
"""


class OtherProcess:
    """`python -c script` with this test's environment (and so its settings). The script imports
    and connects, prints "ready", and starts its work when it reads "go", so a slow interpreter
    start does not move the moment the work happens."""

    def __init__(self, script: str, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                        env=os.environ.copy())
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.process.kill()
            raise AssertionError(f"other process did not start: {line!r} {self.process.stderr.read()}")  # type: ignore[union-attr]

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def result(self, timeout: float = 60) -> Any:
        try:
            out, err = self.process.communicate(timeout=timeout)
        finally:
            self.kill()
        assert self.process.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def spawn() -> Iterator[Callable[..., OtherProcess]]:
    """Starts OtherProcess-es; any still running when the test ends is killed."""
    started: list[OtherProcess] = []

    def start(script: str, *args: str) -> OtherProcess:
        started.append(OtherProcess(script, *args))
        return started[-1]

    yield start
    for process in started:
        process.kill()


# --- 1. success ------------------------------------------------------------------------------------


def test_success_records_tokens_cost_and_key_id_only(gw: Gateway, main_sim: Sim) -> None:
    request_id = new_request("gateway success")
    before = main_sim.stats()
    purpose = _purpose()

    response = ask("Where can I download my invoice?", purpose, request_id=request_id, step="answer")

    after = main_sim.stats()
    [row] = rows(purpose)
    assert (row.outcome, row.model, row.tier, row.request_id, row.step, row.retries, row.cache_hit) == (
        "ok", gw.model, "cheap", request_id, "answer", 0, False)
    assert row.provider == main_sim.host and row.error is None
    # Tokens as the provider reported them, in the response and in the record.
    assert row.prompt_tokens > 0 and row.completion_tokens > 0
    assert (row.prompt_tokens, row.completion_tokens) == (response.usage.prompt_tokens,
                                                          response.usage.completion_tokens)
    assert row.prompt_tokens == after["prompt_tokens"] - before["prompt_tokens"]
    assert row.completion_tokens == after["completion_tokens"] - before["completion_tokens"]
    # Cost: the price table's arithmetic, to the micro-dollar.
    expected = ((PRICE_IN * row.prompt_tokens + PRICE_OUT * row.completion_tokens) / Decimal(1_000_000)).quantize(
        Decimal("0.000001"))
    assert row.cost_usd == call_cost(gw.model, row.prompt_tokens, row.completion_tokens) == expected > 0
    assert row.latency_ms > 0 and row.limiter_wait_ms == 0
    # The request's totals include the call.
    with session_scope() as session:
        req = session.get(Request, request_id)
        assert req is not None
        assert (req.prompt_tokens, req.completion_tokens, req.cost_usd) == (
            row.prompt_tokens, row.completion_tokens, row.cost_usd)
    # Keys appear by id only.
    assert row.key_id == kid(gw.key) and row.key_id.startswith("key-") and len(row.key_id) == 12
    with session_scope() as session:
        row_text = session.scalar(text("SELECT r::text FROM llm_calls r WHERE id = :id"), {"id": row.id})
    assert gw.key not in row_text and gw.key.removeprefix("sk-") not in row_text
    assert after["by_key"].get(key_fingerprint(gw.key), 0) == 1


# --- 2. 429 ----------------------------------------------------------------------------------------


def test_429_waits_as_told_then_succeeds(gw: Gateway, start_sim: Callable[..., Sim]) -> None:
    # A 3-second rate window makes the provider's retry-after about 3 s instead of a minute.
    sim = start_sim("rpm2-short", "--rpm", "2", "--rate-window-s", "3")
    gw.set(provider_base_url=sim.v1, provider_rpm=0, limiter_max_wait_s=10)
    purposes = [_purpose() for _ in range(3)]

    first_started = time.monotonic()
    ask("first quick call", purposes[0])
    ask("second quick call", purposes[1])
    ask("third quick call, over the limit", purposes[2])
    elapsed = time.monotonic() - first_started

    assert [r.outcome for r in rows(purposes[0]) + rows(purposes[1])] == ["ok", "ok"]
    limited, ok = rows(purposes[2])
    assert (limited.outcome, limited.retries, limited.key_id) == ("rate_limited", 0, kid(gw.key))
    assert "Rate limit reached" in (limited.error or "") and limited.cost_usd == 0
    assert (ok.outcome, ok.retries) == ("ok", 1)
    stats = sim.stats()
    # Exactly one 429: the retry came after the provider's retry-after, not before.
    assert stats["by_status"] == {"200": 3, "429": 1}
    # The third call could only be admitted once the first left the 3 s window.
    assert elapsed >= 2.9


def test_429_with_a_long_retry_after_does_not_hold_the_thread(gw: Gateway, start_sim: Callable[..., Sim]) -> None:
    sim = start_sim("rpm2-long", "--rpm", "2")  # a 60 s window: retry-after about 60 s
    gw.set(provider_base_url=sim.v1, provider_rpm=0, limiter_max_wait_s=0.2, provider_max_retries=2)
    ask("first", _purpose())
    ask("second", _purpose())
    purpose = _purpose()

    started = time.monotonic()
    with pytest.raises((Deferred, ProviderError)):
        ask("third, over the limit", purpose)

    assert time.monotonic() - started < 5  # never sits out the minute on a worker thread
    recorded = rows(purpose)
    assert recorded and {r.outcome for r in recorded} == {"rate_limited"}
    assert recorded[0].key_id == kid(gw.key) and recorded[0].retries == 0
    assert sim.stats()["by_status"]["200"] == 2


def test_429_with_a_long_retry_after_defers(gw: Gateway, start_sim: Callable[..., Sim]) -> None:
    sim = start_sim("rpm2-defer", "--rpm", "2")
    gw.set(provider_base_url=sim.v1, provider_rpm=0, limiter_max_wait_s=0.2, provider_max_retries=2)
    ask("first", _purpose())
    ask("second", _purpose())
    purpose = _purpose()

    with pytest.raises(Deferred) as deferred:
        ask("third, over the limit", purpose)

    assert deferred.value.retry_in_s >= 50
    assert [r.outcome for r in rows(purpose)] == ["rate_limited"]
    assert sim.stats()["by_status"] == {"200": 2, "429": 1}  # nothing re-sent inside the retry-after


# --- 3. 5xx ----------------------------------------------------------------------------------------


def test_5xx_is_retried_exactly_max_retries_times(gw: Gateway, main_sim: Sim, faults: httpx.Client) -> None:
    gw.set(provider_max_retries=2, breaker_consecutive_failures=10)
    main_sim.faults(error_rate=1)
    purpose = _purpose()

    with pytest.raises(ProviderError) as failed:
        ask("anything", purpose)

    assert failed.value.kind is FailureClass.SERVER and failed.value.status in (500, 502, 503)
    recorded = rows(purpose)
    assert [(r.outcome, r.retries) for r in recorded] == [("server_error", 0), ("server_error", 1),
                                                          ("server_error", 2)]
    assert all(r.cost_usd == 0 and r.prompt_tokens == 0 and r.key_id == kid(gw.key) for r in recorded)
    assert main_sim.seen(gw.model) == 3

    main_sim.faults(error_rate=0)
    purpose = _purpose()
    ask("anything", purpose)
    assert [(r.outcome, r.retries) for r in rows(purpose)] == [("ok", 0)]
    assert main_sim.seen(gw.model) == 4


# --- 4. 400 ----------------------------------------------------------------------------------------


def test_400_is_not_retried(gw: Gateway, main_sim: Sim) -> None:
    purpose = _purpose()
    with pytest.raises(ProviderError) as failed:
        ask("please reject this [[sim:bad_request]]", purpose)

    assert failed.value.kind is FailureClass.BAD_REQUEST and failed.value.status == 400
    [row] = rows(purpose)
    assert (row.outcome, row.retries, row.cost_usd) == ("bad_request", 0, 0)
    assert main_sim.seen(gw.model) == 1


def test_context_length_trims_to_the_last_turn_once(gw: Gateway, main_sim: Sim) -> None:
    # The simulator answers a context-length error while an old turn carries the marker.
    conversation = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "a long old question [[sim:context_length]]"},
        {"role": "assistant", "content": "an old answer"},
        {"role": "user", "content": "the new question"},
    ]
    purpose = _purpose()
    complete(conversation, tier="cheap", purpose=purpose)
    assert [(r.outcome, r.retries) for r in rows(purpose)] == [("context_length", 0), ("ok", 0)]

    # Still too long after trimming (the last turn itself): one trim only, then the error.
    purpose = _purpose()
    with pytest.raises(ProviderError) as failed:
        complete(conversation[:2], tier="cheap", purpose=purpose)
    assert failed.value.kind is FailureClass.CONTEXT_LENGTH
    assert [r.outcome for r in rows(purpose)] == ["context_length", "context_length"]
    assert main_sim.seen(gw.model) == 4


# --- 5. 401 ----------------------------------------------------------------------------------------


def test_401_takes_the_key_out_of_rotation_and_never_records_it(
    gw: Gateway, start_sim: Callable[..., Sim], caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = f"sk-good-{uuid.uuid4().hex}", f"sk-bad-{uuid.uuid4().hex}"
    sim = start_sim("keys", "--api-keys", good)
    gw.set(provider_base_url=sim.v1, provider_api_keys=f"{bad},{good}")
    purpose = _purpose()
    caplog.set_level(logging.DEBUG)

    ask("first call; the bad key goes first", purpose)
    for i in range(4):
        ask(f"call {i} after the bad key is out", purpose)

    recorded = rows(purpose)
    assert [(r.outcome, r.key_id) for r in recorded] == [("auth_error", kid(bad))] + [("ok", kid(good))] * 5
    with session_scope() as session:
        key_row = session.get(ProviderKey, kid(bad))
        assert key_row is not None and key_row.disabled_at is not None
        assert key_row.provider == sim.host and "401" in (key_row.reason or "")
        assert session.get(ProviderKey, kid(good)) is None
    stats = sim.stats()
    assert stats["by_status"] == {"200": 5, "401": 1}  # the bad key was tried exactly once
    assert stats["by_key"] == {key_fingerprint(good): 5}
    # The key's value is nowhere in the record or the logs; its id is.
    for value in (bad, good):
        assert rows_mentioning(value) == dict.fromkeys(STATE_TABLES, 0)
        assert value not in caplog.text
    assert rows_mentioning(kid(bad))["provider_keys"] == 1


# --- 6. rotation -----------------------------------------------------------------------------------


def test_calls_rotate_over_the_keys(gw: Gateway, main_sim: Sim) -> None:
    a, b = f"sk-a-{uuid.uuid4().hex}", f"sk-b-{uuid.uuid4().hex}"
    gw.set(provider_api_keys=f"{a},{b}")
    purpose = _purpose()
    for i in range(6):
        ask(f"rotation call {i}", purpose)

    used = [r.key_id for r in rows(purpose)]
    assert Counter(used) == {kid(a): 3, kid(b): 3}
    assert all(x != y for x, y in itertools.pairwise(used))  # in turn
    by_key = main_sim.stats()["by_key"]
    assert (by_key.get(key_fingerprint(a)), by_key.get(key_fingerprint(b))) == (3, 3)


# --- 7. circuit breaker across processes -----------------------------------------------------------


def test_breaker_opens_for_every_process_and_closes_after_a_probe(
    gw: Gateway, main_sim: Sim, faults: httpx.Client, spawn: Callable[..., OtherProcess]
) -> None:
    gw.set(breaker_consecutive_failures=3, breaker_cooldown_s=3, provider_max_retries=5)
    target = f"{main_sim.host}/{gw.model}"
    other = _purpose()
    other_process = spawn(ONE_CALL, "from another process", other)
    main_sim.faults(error_rate=1)

    failing = _purpose()
    for _ in range(3):
        with pytest.raises(ProviderError):
            ask("fails while the provider is down", failing)
        if "closed->open" in events(target):
            break
    opened = time.monotonic()
    assert events(target) == ["closed->open"]
    # The third consecutive failure opened it: no further attempt was made.
    assert [r.outcome for r in rows(failing)] == ["server_error"] * 3

    # Another process sees the open breaker in PostgreSQL: it defers without calling the provider.
    sent = main_sim.stats()["total_requests"]
    other_process.go()
    result = other_process.result()
    assert time.monotonic() - opened < 3, "the other process answered too late to see the breaker open"
    assert result["outcome"] == "deferred" and 0 < result["retry_in_s"] <= 3
    assert main_sim.stats()["total_requests"] == sent
    assert rows(other) == []

    # The provider recovers; after the cooldown one probe closes the breaker.
    main_sim.faults(error_rate=0)
    recovered = _purpose()
    deadline = time.monotonic() + 15
    while True:
        try:
            ask("after the cooldown", recovered)
            break
        except Deferred as exc:
            assert time.monotonic() < deadline, "the breaker never let a probe through"
            time.sleep(min(exc.retry_in_s, 1.0))
    assert [r.outcome for r in rows(recovered)] == ["ok"]
    assert events(target) == ["closed->open", "open->half_open", "half_open->closed"]
    # No probe before the 3 s cooldown, by the database's clock (the one the breaker keeps; this
    # test's own clock starts after the breaker opened, so it would undercount). Events carry
    # their transaction's start, a few milliseconds at most before the breaker reads the clock.
    with session_scope() as session:
        at = dict(session.execute(
            select(BreakerEvent.to_state, BreakerEvent.at).where(BreakerEvent.target == target)).all())
    assert (at["half_open"] - at["open"]).total_seconds() >= 2.9


# --- 8. fallback chain -----------------------------------------------------------------------------


def test_fallback_model_takes_the_call_while_the_breaker_is_open(
    gw: Gateway, main_sim: Sim, faults: httpx.Client
) -> None:
    gw.set(breaker_consecutive_failures=3, breaker_cooldown_s=30, provider_max_retries=5)
    main_sim.faults(error_rate=1)
    with pytest.raises(ProviderError):
        ask("opens the cheap model's breaker", _purpose())
    assert events(f"{main_sim.host}/{gw.model}") == ["closed->open"]
    main_sim.faults(error_rate=0)

    gw.set(fallback_models=f"{gw.model}={gw.other}")
    purpose = _purpose()
    ask("served by the fallback", purpose)

    [row] = rows(purpose)
    assert (row.outcome, row.model, row.tier) == ("ok", gw.other, "cheap")
    assert row.cost_usd == call_cost(gw.other, row.prompt_tokens, row.completion_tokens) > 0
    assert main_sim.seen(gw.model) == 3 and main_sim.seen(gw.other) == 1


def test_fallback_to_a_second_provider_within_one_call(
    gw: Gateway, main_sim: Sim, start_sim: Callable[..., Sim], faults: httpx.Client
) -> None:
    second = start_sim("secondary")
    second_key = f"sk-second-{uuid.uuid4().hex}"
    gw.set(secondary_provider_base_url=second.v1, secondary_provider_api_keys=second_key,
           fallback_models=f"{gw.model}=secondary/{gw.other}",
           breaker_consecutive_failures=3, breaker_cooldown_s=30, provider_max_retries=5)
    main_sim.faults(error_rate=1)
    purpose = _purpose()

    ask("the primary is down", purpose)

    recorded = rows(purpose)
    assert [(r.outcome, r.provider, r.model) for r in recorded] == (
        [("server_error", main_sim.host, gw.model)] * 3 + [("ok", second.host, gw.other)])
    assert recorded[-1].key_id == kid(second_key)
    assert events(f"{main_sim.host}/{gw.model}") == ["closed->open"]

    # While the breaker is open the primary is not asked at all.
    purpose = _purpose()
    ask("the primary is still down", purpose)
    assert [(r.outcome, r.provider) for r in rows(purpose)] == [("ok", second.host)]
    assert main_sim.seen(gw.model) == 3 and second.seen(gw.other) == 2


# --- 9. cache --------------------------------------------------------------------------------------


def test_cache_hits_on_whitespace_only_differences_and_expires(gw: Gateway, main_sim: Sim) -> None:
    gw.set(cache_ttl_s=60)
    purpose = _purpose()
    first = ask("What is   the refund\npolicy?", purpose, cache=True)
    second = ask("  What is the refund policy? ", purpose, cache=True)

    miss, hit = rows(purpose)
    assert (miss.cache_hit, hit.cache_hit) == (False, True)
    assert miss.cost_usd > 0 and miss.prompt_tokens > 0
    assert (hit.outcome, hit.cost_usd, hit.prompt_tokens, hit.completion_tokens) == ("ok", 0, 0, 0)
    assert second.content == first.content
    assert main_sim.seen(gw.model) == 1

    other = _purpose()
    ask("What is the refund policy for annual plans?", other, cache=True)
    assert [r.cache_hit for r in rows(other)] == [False]
    assert main_sim.seen(gw.model) == 2

    gw.set(cache_ttl_s=0.5)
    short = _purpose()
    ask("Is there an outage right now?", short, cache=True)
    ask("Is there an outage right now?", short, cache=True)
    time.sleep(1.0)
    ask("Is there an outage right now?", short, cache=True)
    assert [r.cache_hit for r in rows(short)] == [False, True, False]
    assert main_sim.seen(gw.model) == 4

    # cache=False neither reads nor is served from the cache, even for a cached question.
    uncached = _purpose()
    ask("What is the refund policy?", uncached)
    ask("What is the refund policy?", uncached)
    assert [r.cache_hit for r in rows(uncached)] == [False, False]
    assert main_sim.seen(gw.model) == 6


# --- 10. shared limiter ----------------------------------------------------------------------------


def test_shared_limiter_keeps_two_processes_under_the_provider_limit(
    gw: Gateway, start_sim: Callable[..., Sim], spawn: Callable[..., OtherProcess]
) -> None:
    sim = start_sim("rpm30", "--rpm", "30")
    gw.set(provider_base_url=sim.v1, provider_rpm=30, provider_headroom=0.1, limiter_max_wait_s=30)
    here, there = _purpose(), _purpose()
    other = spawn(MANY_CALLS, "4", there)
    errors: list[str] = []

    def one(i: int) -> None:
        try:
            ask(f"test process, call {i}", here)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    other.go()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and other.result() == []

    stats = sim.stats()
    assert stats["by_status"] == {"200": 8} and stats["rate_limited"] == 0
    mine, theirs = rows(here), rows(there)
    assert len(mine) == len(theirs) == 4 and {r.outcome for r in mine + theirs} == {"ok"}
    # 27 calls a minute after headroom (one every 2.22 s) with a burst of 1.5, over both processes:
    # any run of n admissions spans at least (n - 1.5) * 2.22 s, so the eighth starts about 14.4 s
    # after the first. Limiters per process would admit each process's four within about 5.6 s.
    interval = 60 / 27
    admitted = sorted(r.created_at.timestamp() - r.latency_ms / 1000 for r in mine + theirs)
    for i, j in itertools.combinations(range(8), 2):
        assert admitted[j] - admitted[i] >= (j - i + 1 - 1.5) * interval - 0.25, (i, j, admitted)
    # The record shows the waiting: later calls waited for their slot, in both processes.
    waits = [r.limiter_wait_ms for r in mine + theirs]
    assert sum(1 for w in waits if w > 1_000) >= 6
    assert max(r.limiter_wait_ms for r in mine) > 2_000 and max(r.limiter_wait_ms for r in theirs) > 2_000


# --- 11. adaptive limit ----------------------------------------------------------------------------


def test_remaining_zero_header_pauses_the_key_for_everyone(gw: Gateway, start_sim: Callable[..., Sim]) -> None:
    # The provider allows 2 a minute, the configuration claims 100: the headers correct it.
    sim = start_sim("rpm2-headers", "--rpm", "2")
    gw.set(provider_base_url=sim.v1, provider_rpm=100)
    ask("first", _purpose())
    ask("second: the provider answers x-ratelimit-remaining-requests: 0", _purpose())

    bucket = model_bucket(sim.host, kid(gw.key), gw.model, "rpm")
    with session_scope() as session:
        paused_until = session.scalar(select(RateBucket.paused_until).where(RateBucket.bucket == bucket))
        now = session.scalar(text("SELECT extract(epoch from clock_timestamp())"))
    assert paused_until is not None and 50 < paused_until - float(now) <= 61

    purpose = _purpose()
    with pytest.raises(Deferred) as deferred:
        ask("third: the key is paused", purpose)
    assert deferred.value.retry_in_s > 50
    assert rows(purpose) == []
    stats = sim.stats()
    assert stats["total_requests"] == 2 and stats["rate_limited"] == 0  # paused before a 429, not after


# --- 12. a step's timeout --------------------------------------------------------------------------


def test_a_step_past_its_timeout_makes_no_further_call_and_fails_as_retryable(
    gw: Gateway, start_sim: Callable[..., Sim]
) -> None:
    from app.orchestration.registry import get_specialist
    from workflows.engine import RequestInfo, StepError, Workflow, run

    sim = start_sim("slow", "--latency-ms", "700")
    gw.set(provider_base_url=sim.v1)
    request_id = new_request("a step that runs out of time")
    answered: list[int] = []
    workflow = Workflow("deadline")

    @workflow.step(timeout_s=1.0, retries=0)
    def slow(ctx: Any) -> dict[str, Any]:
        for n in range(5):
            ctx.llm([{"role": "user", "content": f"call {n}"}], max_tokens=16)
            answered.append(n)
        return {}

    info = RequestInfo(request_id, "gw-test", "a step that runs out of time", "normal", [])
    with pytest.raises(StepError) as failed:
        run(workflow, info, get_specialist("technical"), {})

    # 0.7 s per call: the second ends past the 1 s deadline, so no third call is made.
    assert answered == [0, 1] and sim.stats()["total_requests"] == 2
    assert failed.value.transient and "took longer than 1s" in str(failed.value)
    with session_scope() as session:
        step = session.scalars(select(StepRun).where(StepRun.request_id == request_id)).one()
        calls = session.scalars(select(LlmCall).where(LlmCall.request_id == request_id)).all()
        totals = session.get(Request, request_id)
    assert (step.step, step.status, step.error) == ("slow", "failed", "took longer than 1s")
    # The two calls were paid for: they are in the record and in the request's totals.
    assert len(calls) == 2 and all(c.outcome == "ok" for c in calls)
    assert totals is not None and totals.prompt_tokens == sum(c.prompt_tokens for c in calls) > 0


def test_a_checkpoint_outlives_the_database_dropping_its_connections(
    gw: Gateway, start_sim: Callable[..., Sim], caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg

    from app.orchestration.registry import get_specialist
    from app.state import get_engine
    from workflows.engine import RequestInfo, Workflow, run

    sim = start_sim("checkpoint")
    gw.set(provider_base_url=sim.v1)
    request_id = new_request("the database restarts under a step")
    dropped: list[int] = []
    workflow = Workflow("dropped-connections")

    @workflow.step(retries=0)
    def answer(ctx: Any) -> dict[str, Any]:
        response = ctx.llm([{"role": "user", "content": "one paid call"}], max_tokens=16)
        # What a database restart does to the pool: every connection this process holds is gone.
        url = get_engine().url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as admin:
            row = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE application_name LIKE %s", (f"switchboard:%:{os.getpid()}",)).fetchone()
        dropped.append(row[0] if row else 0)
        return {"reply": response.content}

    info = RequestInfo(request_id, "gw-test", "the database restarts under a step", "normal", [])
    with caplog.at_level(logging.WARNING, logger="workflows.engine"):
        outputs = run(workflow, info, get_specialist("technical"), {})

    assert dropped[0] >= 1 and outputs["answer"]["reply"]
    assert "not written" in caplog.text  # the first try met a dropped connection
    # The step's checkpoint and its one paid call are in the record, once; nothing was paid twice.
    assert sim.stats()["total_requests"] == 1
    with session_scope() as session:
        step = session.scalars(select(StepRun).where(StepRun.request_id == request_id)).one()
        calls = session.scalars(select(LlmCall).where(LlmCall.request_id == request_id)).all()
        totals = session.get(Request, request_id)
    assert (step.status, step.output) == ("succeeded", outputs["answer"])
    assert len(calls) == 1 and totals is not None and totals.prompt_tokens == calls[0].prompt_tokens > 0


def test_a_read_only_steps_checkpoint_goes_with_the_next_one(gw: Gateway, start_sim: Callable[..., Sim]) -> None:
    from app.orchestration.registry import get_specialist
    from workflows.engine import RequestInfo, StepError, Workflow, run

    sim = start_sim("carried")
    gw.set(provider_base_url=sim.v1)
    request_id = new_request("a read-only step, then a step that pays and fails")
    workflow = Workflow("carried-checkpoints")
    seen: list[list[str]] = []

    @workflow.step(retries=0, reads_only=True)
    def look(ctx: Any) -> dict[str, Any]:
        return {"found": "the customer's plan"}

    @workflow.step(retries=0, after=(look,))
    def answer(ctx: Any) -> dict[str, Any]:
        with session_scope() as session:  # what a crash here would leave: look's row is not written yet
            seen.append(list(session.scalars(select(StepRun.step).where(StepRun.request_id == request_id))))
        ctx.llm([{"role": "user", "content": "one paid call"}], max_tokens=16)
        raise ValueError("the step fails after paying")

    info = RequestInfo(request_id, "gw-test", "a read-only step, then a step that pays and fails", "normal", [])
    with pytest.raises(StepError):
        run(workflow, info, get_specialist("technical"), {})

    # Written with the failed step's checkpoint, in its statement: the record has both steps and
    # the paid call, once.
    assert seen == [[]]
    with session_scope() as session:
        steps = dict(session.execute(select(StepRun.step, StepRun.status).where(StepRun.request_id == request_id)).all())
        calls = session.scalars(select(LlmCall).where(LlmCall.request_id == request_id)).all()
    assert steps == {"look": "succeeded", "answer": "failed"}
    assert len(calls) == 1 and calls[0].outcome == "ok" and sim.stats()["total_requests"] == 1
