"""The one door to the LLM: every call from every process goes through `complete()`.

For each call: the exact cache (single-shot calls only), then the chain of targets (the tier's
model, then its fallbacks) skipping any whose circuit is open, the shared rate limiter (slot
reserved before the call, reconciled with real usage after), one retry budget by failure class,
and a record of every attempt (tokens, cost, latency, limiter wait, retries, cache hit, outcome).
No database connection is held while waiting or while the provider answers.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from app import extras
from app.config import Settings, get_settings
from app.errors import InferenceError
from app.inference import budget, limits, provider
from app.inference import keys as key_state
from app.inference.adapters import ChatRequest, adapter_for
from app.inference.breaker import UNHEALTHY, Breaker, BreakerOpen, BreakerPolicy, Permit, PostgresBreaker
from app.inference.cache import PostgresCache, ResponseCache, cache_key
from app.inference.call_log import write_calls
from app.inference.cost import call_cost
from app.inference.deltas import Deltas
from app.inference.errors import FailureClass, ProviderError
from app.inference.headers import exhausted_for
from app.inference.history import estimate_tokens
from app.inference.keys import KeyRing
from app.inference.limiter import Limiter, PostgresLimiter, Reservation, WaitTooLong
from app.inference.limiter_lease import LeasingLimiter
from app.inference.targets import Target, chain
from app.observability import metrics, tracing
from app.request_scope import current
from app.state import autocommit_scope

log = logging.getLogger(__name__)


class Deferred(InferenceError):
    """Come back later: every target's circuit is open, or the rate-limit slot is too far away.
    Not a failure: the task is re-queued without spending an attempt."""

    def __init__(self, reason: str, retry_in_s: float) -> None:
        super().__init__(f"{reason}; retry in {retry_in_s:.1f}s")
        self.retry_in_s = retry_in_s


@dataclass
class _Backends:
    limiter: Limiter
    breaker: Breaker
    cache: ResponseCache


_lock = threading.Lock()
_backends: _Backends | None = None
_rings: dict[str, KeyRing] = {}


def _limiter(s: Settings) -> Limiter:
    shared: Limiter
    if s.limiter_backend == "redis":
        extras.require("redis", "SWITCHBOARD_LIMITER_BACKEND=redis")
        # Loaded on demand: redis-py is the optional `redis` extra.
        from app.inference.limiter_redis import RedisLimiter  # noqa: PLC0415

        shared = RedisLimiter(s.limiter_redis_url.get_secret_value())
    else:
        shared = PostgresLimiter()
    return LeasingLimiter(shared, s.limiter_lease) if s.limiter_lease >= 2 else shared


def backends() -> _Backends:
    global _backends
    with _lock:
        if _backends is None:
            s = get_settings()
            policy = BreakerPolicy(
                s.breaker_consecutive_failures,
                s.breaker_failure_rate,
                s.breaker_window_s,
                s.breaker_min_calls,
                s.breaker_cooldown_s,
            )
            _backends = _Backends(_limiter(s), PostgresBreaker(policy), PostgresCache())
        return _backends


def configure(
    *, limiter: Limiter | None = None, breaker: Breaker | None = None, cache: ResponseCache | None = None
) -> None:
    """Swap backends (tests use the in-memory ones); None keeps the current one."""
    global _backends
    current = backends()
    with _lock:
        _backends = _Backends(limiter or current.limiter, breaker or current.breaker, cache or current.cache)


def reset() -> None:
    global _backends
    with _lock:
        _backends = None
        _rings.clear()


def _ring(target: Target) -> KeyRing:
    with _lock:
        return _rings.setdefault(target.provider.name, KeyRing(list(target.provider.keys)))


def estimate_prompt_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
    return sum(estimate_tokens(json.dumps(m, default=str)) for m in messages) + (
        estimate_tokens(json.dumps(tools)) if tools else 0
    )


def _trim_to_last_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System messages plus everything from the last user message: still a valid conversation."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    return [m for m in messages[:last_user] if m.get("role") == "system"] + messages[last_user:]


@dataclass
class _Call:
    messages: list[dict[str, Any]]
    tier: str
    purpose: str
    request_id: str | None
    step: str | None
    tools: list[dict[str, Any]] | None
    max_tokens: int
    sink: list[dict[str, Any]] | None
    params: Params
    deltas: Deltas | None = None


@dataclass(frozen=True)
class Params:
    """Per-call parameters every adapter passes on in its API's terms (see ChatRequest)."""

    temperature: float | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    def request(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, max_tokens: int
    ) -> ChatRequest:
        return ChatRequest(
            model, messages, tools, max_tokens, self.temperature, self.tool_choice, self.response_format
        )


@tracing.llm_call
def complete(
    messages: list[dict[str, Any]],
    *,
    tier: str,
    purpose: str,
    request_id: str | None = None,
    step: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    max_tokens: int = 512,
    temperature: float | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    response_format: dict[str, Any] | None = None,
    cache: bool = False,
    tenant: str | None = None,
    record_into: list[dict[str, Any]] | None = None,
    writes_into: list[Callable[[Connection], object]] | None = None,
    stream_to: Deltas | None = None,
) -> provider.ChatResponse:
    """Call the model of `tier`. `temperature`, `tool_choice` and `response_format` take OpenAI's
    forms; every provider's adapter passes them on in its own API's terms. `cache=True` only for
    single-shot calls whose answer depends on nothing but the messages (never for a multi-turn
    agent step); cached answers are the `tenant`'s own, never served to another tenant. With
    `record_into`, successful calls are appended there for the caller to complete with its own
    checkpoint (see write_calls); with `writes_into`, so is the cache entry, as a write to run in
    that transaction. With `stream_to` the provider streams its answer and each piece of text goes
    there as it arrives; limits, retries and the record are those of any call, and what is
    returned is the whole answer (never the text of an attempt cut off mid-way).
    Raises budget.BudgetExhausted when the request's or tenant's budget cannot cover the call."""
    attempt = partial(
        _complete,
        messages,
        purpose=purpose,
        request_id=request_id,
        step=step,
        tools=tools,
        max_tokens=max_tokens,
        params=Params(temperature, tool_choice, response_format),
        cache=cache,
        tenant=tenant,
        record_into=record_into,
        writes_into=writes_into,
        stream_to=stream_to,
    )
    chosen = budget.tier_for(request_id, tier)
    try:
        return attempt(tier=chosen)
    except budget.BudgetExhausted as refused:
        if chosen == "cheap":
            raise
        log.info("%s; trying the cheap tier", refused)
        return attempt(tier="cheap")


def _complete(
    messages: list[dict[str, Any]],
    *,
    tier: str,
    purpose: str,
    request_id: str | None,
    step: str | None,
    tools: list[dict[str, Any]] | None,
    max_tokens: int,
    params: Params,
    cache: bool,
    tenant: str | None,
    record_into: list[dict[str, Any]] | None,
    writes_into: list[Callable[[Connection], object]] | None,
    stream_to: Deltas | None,
) -> provider.ChatResponse:
    settings = get_settings()
    call = _Call(messages, tier, purpose, request_id, step, tools, max_tokens, record_into, params, stream_to)
    cache = cache and stream_to is None
    targets = chain(settings.model_for_tier(tier))
    b = backends()
    key = None
    if cache:
        key = cache_key(targets[0].model, messages, tools, max_tokens, params.__dict__, tenant=tenant)
    if key is not None:
        hit = b.cache.get(key)
        if hit is not None:
            # Recorded under the model that produced the answer (a fallback, perhaps).
            source = next((t for t in targets if t.model == hit.model), targets[0])
            _record(call, source, None, outcome="ok", response=hit, cache_hit=True)
            return hit
    waits: list[float] = []
    last_error: ProviderError | None = None
    for target in targets:
        try:
            permit = b.breaker.before_call(target.label)
        except BreakerOpen as exc:
            waits.append(exc.retry_in_s)
            continue
        try:
            response = _call_target(call, target, permit, b)
        except _TargetDown as down:
            last_error = down.error
            log.warning("%s is down (%s); trying the next target in the chain", target.label, down.error)
            continue
        if key is not None:
            if writes_into is not None:
                writes_into.append(partial(b.cache.put, key, response, settings.cache_ttl_s))
            else:
                _put_in_cache(b.cache, key, response, settings.cache_ttl_s)
        return response
    if last_error is not None:
        # Calls were made and failed: that is a failed attempt, so a poison request cannot defer
        # itself forever by tripping the breaker.
        raise last_error
    raise Deferred("every model in the chain has its circuit open", min(waits))


def _put_in_cache(cache: ResponseCache, key: str, response: provider.ChatResponse, ttl_s: float) -> None:
    """A cache entry that cannot be written costs a later hit, never the paid answer in hand."""
    try:
        cache.put(key, response, ttl_s)
    except SQLAlchemyError as exc:
        log.warning("response not cached (%s); the answer is returned all the same", type(exc).__name__)


class _TargetDown(InferenceError):
    def __init__(self, error: ProviderError) -> None:
        self.error = error


def _backoff(attempt: int) -> float:
    return random.uniform(0, min(8.0, 0.5 * 2**attempt))


def _call_target(call: _Call, target: Target, permit: Permit, b: _Backends) -> provider.ChatResponse:
    settings = get_settings()
    p = target.provider
    messages, trimmed, retries = call.messages, False, 0
    while True:
        disabled = key_state.disabled_key_ids()
        usable = [k for k in p.key_ids() if k not in disabled]
        if not usable:
            raise ProviderError(FailureClass.AUTH, f"every API key of {p.host} is out of rotation")
        prompt_estimate = estimate_prompt_tokens(messages, call.tools)
        estimate = prompt_estimate + call.max_tokens
        reservation: Reservation | None = None
        # Every level's bucket (key, model group, provider) at once; none when nothing is limited.
        candidates = limits.candidates(target, usable, estimate)
        if candidates:
            try:
                reservation = b.limiter.acquire(candidates, settings.limiter_max_wait_s)
            except WaitTooLong as exc:
                raise Deferred(f"rate limit of {target.label} is saturated", exc.wait_s) from None
            kid = reservation.key_id
        else:
            kid, _ = _ring(target).next(exclude=set(disabled))
        wait_s = reservation.wait_s if reservation else 0.0
        try:
            call_id = _open_call(call, target, kid, prompt_estimate, wait_s, retries)
        except budget.BudgetExhausted:
            if reservation:
                b.limiter.reconcile(reservation, 0)  # no call made: its tokens go back
            raise
        started = time.perf_counter()
        if call.deltas is not None:
            call.deltas.begin()
        try:
            response = provider.chat(
                adapter_for(p.kind),
                base_url=p.base_url,
                request=call.params.request(target.model, messages, call.tools, call.max_tokens),
                api_key=p.secret(kid).get_secret_value(),
                key_id=kid,
                on_delta=call.deltas.delta if call.deltas is not None else None,
            )
        except ProviderError as exc:
            _record(
                call,
                target,
                kid,
                outcome=exc.kind,
                error=str(exc),
                started=started,
                wait_s=wait_s,
                retries=retries,
                call_id=call_id,
            )
            if exc.kind is FailureClass.RATE_LIMITED:
                if permit.probe:
                    b.breaker.on_success(permit)  # it answered: the target is up
                # The provider knows best: everyone pauses this key and model as long as it says.
                wait = exc.retry_after_s or 1.0
                if reservation:
                    b.limiter.pause(limits.pause_bucket(target, kid), wait)
                elif wait > settings.limiter_max_wait_s:
                    # Retrying inside the window the provider named is sure to be refused again.
                    raise Deferred(f"{target.label} asked to wait {wait:g}s", wait) from None
                else:
                    time.sleep(wait)
            elif exc.kind is FailureClass.AUTH:
                key_state.disable(p.host, kid, f"HTTP {exc.status} from the provider")
                continue  # another key may work; this does not spend the retry budget
            elif exc.kind in UNHEALTHY:
                if b.breaker.on_failure(permit, exc.kind):
                    raise _TargetDown(exc) from None
                time.sleep(_backoff(retries))
            elif exc.kind is FailureClass.CONTEXT_LENGTH and not trimmed:
                messages, trimmed = _trim_to_last_turn(messages), True
                continue
            else:
                if permit.probe:
                    b.breaker.on_success(permit)  # it answered: the target is up
                raise
            retries += 1
            if retries > settings.provider_max_retries:
                raise
            continue
        if call.deltas is not None and not (response.usage.prompt_tokens or response.usage.completion_tokens):
            # A server that ignores stream_options.include_usage: reconcile with what was sent
            # and received rather than with nothing.
            response = response.model_copy(
                update={
                    "usage": provider.Usage(
                        prompt_tokens=prompt_estimate,
                        completion_tokens=estimate_tokens(response.content or ""),
                    )
                }
            )
        usage = response.usage
        if reservation:
            b.limiter.reconcile(reservation, usage.prompt_tokens + usage.completion_tokens)
            limits.learn(b.limiter, target, reservation, response.rate_headers)
            pause = exhausted_for(response.rate_headers)
            if pause:
                b.limiter.pause(limits.pause_bucket(target, kid), pause)
        b.breaker.on_success(permit)
        _record(
            call,
            target,
            kid,
            outcome="ok",
            response=response,
            started=started,
            wait_s=wait_s,
            retries=retries,
            call_id=call_id,
        )
        return response


def _open_call(
    call: _Call, target: Target, kid: str | None, prompt_estimate: int, wait_s: float, retries: int
) -> int:
    """The call's intent row, with its budget reservation, before the provider is called: a process
    that dies before the call completes leaves it in the record (app/inference/budget.py)."""
    return budget.open_call(
        budget.Intent(
            request_id=call.request_id,
            step=call.step,
            purpose=call.purpose,
            provider=target.provider.host,
            model=target.model,
            tier=call.tier,
            key_id=kid,
            estimated_tokens=prompt_estimate + call.max_tokens,
            amount=budget.estimate(target.model, prompt_estimate, call.max_tokens),
            limiter_wait_ms=wait_s * 1000,
            retries=retries,
        )
    )


def _record(
    call: _Call,
    target: Target,
    kid: str | None,
    *,
    outcome: str,
    response: provider.ChatResponse | None = None,
    error: str | None = None,
    started: float | None = None,
    wait_s: float = 0.0,
    retries: int = 0,
    cache_hit: bool = False,
    call_id: int | None = None,
) -> None:
    prompt = response.usage.prompt_tokens if response and not cache_hit else 0
    completion = response.usage.completion_tokens if response and not cache_hit else 0
    # None: tokens on a model with no price (recorded as unknown, see cost.py).
    cost = call_cost(target.model, prompt, completion) if outcome == "ok" else Decimal(0)
    row = {
        # Completes the call's intent row; what it counts against the budgets.
        "call_id": call_id,
        "charged_usd": budget.charge(target.model, prompt, completion) if outcome == "ok" else 0,
        "request_id": call.request_id,
        "step": call.step,
        "purpose": call.purpose,
        "provider": target.provider.host,
        "model": target.model,
        "tier": call.tier,
        "key_id": kid,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": cost,
        "latency_ms": (time.perf_counter() - started) * 1000 if started is not None else 0.0,
        "limiter_wait_ms": wait_s * 1000,
        "retries": retries,
        "cache_hit": cache_hit,
        "outcome": outcome,
        "error": error,
    }
    metrics.observe_llm_call(row)
    tracing.record_call(row, target.provider.kind)
    scope = current()
    if scope is not None and outcome == "ok":
        scope.add_usage(target.model, prompt + completion, cost)
    if call.sink is not None and outcome == "ok":
        # Completed with the caller's step checkpoint, in the same transaction (its intent row is in
        # the record already). Failures are written at once: the circuit breaker counts them.
        call.sink.append(row)
        return
    with autocommit_scope() as conn:  # one statement: it commits by itself
        write_calls(conn, [row])
