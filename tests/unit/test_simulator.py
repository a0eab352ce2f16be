"""Tests for the simulated OpenAI-compatible provider, seen from a client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from app import simulator
from app.simulator import SimulatorConfig, create_app, format_reset_duration, key_fingerprint

T = TypeVar("T")
KEY = "sk-test-1"
AUTH = {"Authorization": f"Bearer {KEY}"}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_customer",
            "description": "Look up a customer account by email address",
            "parameters": {
                "type": "object",
                "properties": {"email": {"type": "string"}},
                "required": ["email"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_invoice",
            "description": "Fetch an invoice and its payment status",
            "parameters": {
                "type": "object",
                "properties": {
                    "invoice_id": {"type": "string"},
                    "include_lines": {"type": "boolean"},
                    "limit": {"type": "integer"},
                },
                "required": ["invoice_id", "include_lines"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "check_status",
            "description": "Check the service status of a component",
            "parameters": {
                "type": "object",
                "properties": {"component": {"type": "string"}},
                "required": ["component"],
            },
        },
    },
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _no_sim_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's exported SWITCHBOARD_SIM_* must not change test outcomes.
    import os

    for name in list(os.environ):
        if name.startswith("SWITCHBOARD_SIM_"):
            monkeypatch.delenv(name)


def make_app(clock: Callable[[], float] | None = None, **config: Any) -> Starlette:
    if clock is None:
        return create_app(SimulatorConfig(**config))
    return create_app(SimulatorConfig(**config), clock=clock)


def run(app: Starlette, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            return await scenario(client)

    return asyncio.run(main())


def chat(
    client: httpx.AsyncClient,
    messages: list[dict[str, Any]],
    *,
    key: str = KEY,
    model: str = "sim-small",
    **extra: Any,
) -> Awaitable[httpx.Response]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(
        "/v1/chat/completions", json={"model": model, "messages": messages, **extra}, headers=headers
    )


def classify_messages(ticket: str) -> list[dict[str, Any]]:
    system = (
        "You route support tickets. Answer with one label.\n"
        "Options: billing, technical\n"
        "- billing: questions about money owed\n"
        "- technical: problems using the product"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": ticket}]


def content_of(response: httpx.Response) -> str | None:
    content: str | None = response.json()["choices"][0]["message"]["content"]
    return content


# --- answers -----------------------------------------------------------------


def test_classification_picks_label_by_keywords() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await chat(client, classify_messages("I was charged twice on my invoice")),
            await chat(client, classify_messages("the API returns 500 errors")),
            await chat(client, classify_messages("Lovely weather today")),
        ]

    billing, technical, unknown = run(make_app(), scenario)
    assert [r.status_code for r in (billing, technical, unknown)] == [200, 200, 200]
    assert content_of(billing) == "billing"
    assert content_of(technical) == "technical"
    assert content_of(unknown) == "unknown"
    body = billing.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "sim-small"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in body["choices"][0]["message"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == 2  # ceil(len("billing") / 4)


def test_classification_options_inline_in_user_message() -> None:
    prompt = "Classify this ticket.\nOptions: sales, billing, technical\nTicket: my login fails with an error"

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await chat(client, [{"role": "user", "content": prompt}])

    assert content_of(run(make_app(), scenario)) == "technical"


def test_answers_are_deterministic() -> None:
    messages = [{"role": "user", "content": "Where is my order? It has been a week."}]

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await chat(client, messages), await chat(client, messages)]

    first, second = run(make_app(), scenario)
    assert content_of(first) == content_of(second)
    assert "Where is my order?" in (content_of(first) or "")
    assert first.json()["usage"] == second.json()["usage"]
    # And across processes/app instances.
    assert content_of(run(make_app(), scenario)[0]) == content_of(first)


def test_tool_calls_then_final_answer() -> None:
    user = {
        "role": "user",
        "content": "Hi, my email is jane@example.com and I was charged twice on INV-1042.",
    }

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        first = await chat(client, [user], tools=TOOLS)
        again = await chat(client, [user], tools=TOOLS)
        message = first.json()["choices"][0]["message"]
        tool_messages = [
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": json.dumps({"result": f"{call['function']['name']} ok", "plan": "pro"}),
            }
            for call in message["tool_calls"]
        ]
        final = await chat(client, [user, message, *tool_messages], tools=TOOLS)
        return first, again, final

    first, again, final = run(make_app(), scenario)
    choice = first.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["lookup_customer", "get_invoice"]
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    assert json.loads(calls[0]["function"]["arguments"]) == {"email": "jane@example.com"}
    # Required boolean filled with false; optional integer left out.
    assert json.loads(calls[1]["function"]["arguments"]) == {"invoice_id": "INV-1042", "include_lines": False}
    assert again.json()["choices"][0]["message"]["tool_calls"] == calls  # deterministic ids too

    final_choice = final.json()["choices"][0]
    assert final_choice["finish_reason"] == "stop"
    assert "tool_calls" not in final_choice["message"]
    answer = final_choice["message"]["content"]
    assert answer.startswith("Thanks for reaching out about 'Hi, my email is jane@example.com")
    assert "lookup_customer returned" in answer and "get_invoice ok" in answer


def test_tool_loop_marker_keeps_calling_tools_after_results() -> None:
    user = {"role": "user", "content": f"{simulator.TOOL_LOOP_MARKER} jane@example.com, INV-1042 again"}

    async def scenario(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [user]
        choices = []
        for _ in range(4):
            choice = (await chat(client, messages, tools=TOOLS)).json()["choices"][0]
            choices.append(choice)
            messages += [choice["message"], *({"role": "tool", "tool_call_id": c["id"], "content": "{}"}
                                              for c in choice["message"].get("tool_calls") or [])]
        return choices

    choices = run(make_app(), scenario)
    assert [c["finish_reason"] for c in choices] == ["tool_calls"] * 4  # a runaway agent loop


def test_tool_needing_missing_email_is_skipped() -> None:
    user = {"role": "user", "content": "Please check the status of the webhooks component"}

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await chat(client, [user], tools=TOOLS)

    calls = run(make_app(), scenario).json()["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["check_status"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"component": "webhooks"}


def test_no_overlapping_tool_gives_plain_answer() -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await chat(client, [{"role": "user", "content": "Tell me a joke"}], tools=TOOLS)

    choice = run(make_app(), scenario).json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"].startswith("Thanks for reaching out about 'Tell me a joke'")


# --- auth and markers ----------------------------------------------------------


def test_auth_with_configured_keys() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        messages = [{"role": "user", "content": "hello"}]
        return [
            await chat(client, messages, key="wrong"),
            await chat(client, messages, key=""),
            await chat(client, messages, key=KEY),
            await client.get("/v1/models", headers={"Authorization": "Bearer wrong"}),
        ]

    wrong, missing, good, models = run(make_app(api_keys=[KEY]), scenario)
    assert wrong.status_code == 401
    error = wrong.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    assert "wrong" not in error["message"]  # keys are never echoed
    assert missing.status_code == 401
    assert good.status_code == 200
    assert models.status_code == 401


def test_any_key_accepted_when_none_configured() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await chat(client, [{"role": "user", "content": "hi"}], key="anything"),
            await chat(client, [{"role": "user", "content": "hi"}], key=""),
        ]

    anything, empty = run(make_app(), scenario)
    assert anything.status_code == 200
    assert empty.status_code == 401


def test_markers() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await chat(client, [{"role": "user", "content": "please [[sim:fail]] now"}]),
            await chat(client, [{"role": "user", "content": "[[sim:bad_request]]"}]),
        ]

    fail, bad = run(make_app(), scenario)
    assert fail.status_code == 500
    assert fail.json()["error"]["type"] == "server_error"
    assert "x-ratelimit-remaining-requests" in fail.headers
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"


def test_slow_marker_adds_latency() -> None:
    async def scenario(client: httpx.AsyncClient) -> float:
        started = time.perf_counter()
        response = await chat(client, [{"role": "user", "content": "hurry [[sim:slow]]"}])
        assert response.status_code == 200
        assert "[[sim:slow]]" not in (content_of(response) or "")
        return time.perf_counter() - started

    assert run(make_app(slow_marker_s=0.2), scenario) >= 0.2


def test_invalid_body_is_openai_style_400() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post("/v1/chat/completions", content=b"{nope", headers=AUTH),
            await client.post(
                "/v1/chat/completions", json={"model": "sim-small", "messages": []}, headers=AUTH
            ),
        ]

    for response in run(make_app(), scenario):
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


# --- limits and faults ---------------------------------------------------------


def test_rpm_limit_headers_and_429() -> None:
    clock = FakeClock()
    messages = [{"role": "user", "content": "hello"}]

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        responses = [await chat(client, messages) for _ in range(4)]
        responses.append(await chat(client, messages, key="sk-other"))  # separate bucket
        responses.append(await chat(client, messages, model="sim-large"))  # per model too
        clock.now += 61
        responses.append(await chat(client, messages))
        return responses

    *allowed, limited, other_key, other_model, later = run(make_app(clock=clock, rpm=3), scenario)
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in allowed] == ["2", "1", "0"]
    for response in allowed:
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        for name in ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"):
            assert name in response.headers
    assert allowed[0].headers["x-ratelimit-reset-requests"] == "1m0s"

    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) == 60
    assert int(limited.headers["retry-after-ms"]) == 60_000
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.headers["x-ratelimit-reset-requests"] == "1m0s"
    error = limited.json()["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"

    assert other_key.status_code == 200 and other_model.status_code == 200
    assert later.status_code == 200
    assert later.headers["x-ratelimit-remaining-requests"] == "2"


def test_tpm_limit() -> None:
    clock = FakeClock()
    messages = [{"role": "user", "content": "x" * 400}]  # ~100 prompt + ~40 completion tokens

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await chat(client, messages) for _ in range(3)]

    first, second, third = run(make_app(clock=clock, tpm=400), scenario)
    assert first.status_code == 200 and second.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    assert 100 < used < 200
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 400 - used
    assert third.status_code == 429
    assert third.json()["error"]["type"] == "tokens"
    assert int(third.headers["retry-after"]) >= 1


def test_outage_then_recovery() -> None:
    messages = [{"role": "user", "content": "hello"}]

    async def scenario(client: httpx.AsyncClient) -> tuple[dict[str, Any], int, int]:
        faults = (await client.post("/admin/faults", json={"outage_seconds": 0.3})).json()
        during = (await chat(client, messages)).status_code
        await asyncio.sleep(0.35)
        after = (await chat(client, messages)).status_code
        return faults, during, after

    faults, during, after = run(make_app(), scenario)
    assert 0 < faults["outage_remaining_s"] <= 0.3
    assert (during, after) == (503, 200)


def test_error_rate_and_fault_validation() -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, list[int], httpx.Response]:
        faults = await client.post("/admin/faults", json={"error_rate": 1.0, "latency_ms": 5})
        codes = [(await chat(client, [{"role": "user", "content": "hi"}])).status_code for _ in range(5)]
        bad = await client.post("/admin/faults", json={"error_rat": 1})
        return faults, codes, bad

    faults, codes, bad = run(make_app(), scenario)
    assert faults.json()["error_rate"] == 1.0 and faults.json()["latency_ms"] == 5
    assert all(code in (500, 502, 503) for code in codes)
    assert bad.status_code == 400


def test_concurrent_slow_requests_overlap() -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(chat(client, [{"role": "user", "content": f"ticket {i}"}]) for i in range(50))
        )
        elapsed = time.perf_counter() - started
        assert all(r.status_code == 200 for r in responses)
        return elapsed, (await client.get("/admin/stats")).json()

    elapsed, stats = run(make_app(latency_ms=200), scenario)
    assert elapsed < 1.5  # 50 x 200 ms served concurrently, not back to back
    assert stats["max_in_flight"] == 50
    assert stats["in_flight"] == 0


def test_stats_and_reset() -> None:
    clock = FakeClock()
    messages = [{"role": "user", "content": "hello"}]

    async def scenario(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
        for _ in range(3):
            await chat(client, messages)
        await chat(client, messages, model="sim-large")
        await chat(client, [{"role": "user", "content": "[[sim:fail]]"}])
        stats = (await client.get("/admin/stats")).json()
        await client.post("/admin/reset")
        after = (await client.get("/admin/stats")).json()
        return stats, after

    stats, after = run(make_app(clock=clock, rpm=2), scenario)
    assert stats["total_requests"] == 5
    assert stats["by_status"] == {"200": 3, "429": 1, "500": 1}
    assert stats["rate_limited"] == 1
    assert stats["by_key"] == {key_fingerprint(KEY): 5}
    assert KEY not in json.dumps(stats)
    assert stats["by_model"] == {"sim-small": 4, "sim-large": 1}
    assert stats["accepted_per_minute_max"] == 3  # 2 on sim-small + 1 on sim-large
    assert stats["faults_injected"] == {"fail_marker": 1}
    assert after["total_requests"] == 0 and after["by_status"] == {}
    assert after["accepted_per_minute_max"] == 0


def test_health_and_models() -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return await client.get("/healthz"), await client.get("/v1/models", headers=AUTH)

    health, models = run(make_app(models=["m1", "m2"]), scenario)
    assert health.status_code == 200 and health.json() == {"ok": True}
    assert [m["id"] for m in models.json()["data"]] == ["m1", "m2"]


# --- pieces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0s"), (0.85, "850ms"), (1, "1s"), (8.64, "8.64s"), (60, "1m0s"), (360, "6m0s"), (90.5, "1m30.5s")],
)
def test_format_reset_duration(seconds: float, expected: str) -> None:
    assert format_reset_duration(seconds) == expected


def test_accepted_window_counts_by_admission_time() -> None:
    window = simulator.AcceptedWindow()
    for t in (30.0, 0.0, 59.0, 61.0, 10.0):  # out of order, as answers finish
        window.add(t)
    assert window.max_count() == 4  # 0, 10, 30, 59 in one 60 s window


def test_config_from_env_and_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_SIM_API_KEYS", "a, b")
    monkeypatch.setenv("SWITCHBOARD_SIM_RPM", "5")
    monkeypatch.setenv("SWITCHBOARD_SIM_PORT", "9999")
    config = SimulatorConfig()
    assert (config.api_keys, config.rpm, config.port) == (["a", "b"], 5, 9999)

    seen: dict[str, Any] = {}

    def fake_run(app: Starlette, **kwargs: Any) -> None:
        seen.update(kwargs, config=app.state.simulator.config)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert simulator.main(["--port", "18000", "--latency-ms", "25", "--api-keys", "k1,k2"]) == 0
    assert seen["port"] == 18000 and seen["backlog"] == 2048 and seen["access_log"] is False
    assert seen["config"].rpm == 5  # env still applies where no flag is given
    assert seen["config"].latency_ms == 25 and seen["config"].api_keys == ["k1", "k2"]


def test_account_limit_across_models_and_model_limits_per_model() -> None:
    # The key may make 3 requests a minute whatever the model; sim-large alone only 1.
    clock = FakeClock()
    messages = [{"role": "user", "content": "hello"}]

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], dict[str, Any]]:
        responses = [
            await chat(client, messages, model="sim-large"),
            await chat(client, messages, model="sim-large"),  # over the model's own limit
            await chat(client, messages),
            await chat(client, messages),
            await chat(client, messages),  # over the key's limit, though sim-small has none of its own
            await chat(client, messages, key="sk-other"),  # another key: its own account
        ]
        return responses, (await client.get("/admin/stats")).json()

    app = make_app(clock=clock, account_rpm=3, model_limits="sim-large=1")
    (large, large_refused, small, small2, account_refused, other), stats = run(app, scenario)
    assert [r.status_code for r in (large, large_refused, small, small2, account_refused, other)] == [
        200, 429, 200, 200, 429, 200]
    # Headers report the tightest limit that applies: the model's for sim-large, the key's for sim-small.
    assert large.headers["x-ratelimit-limit-requests"] == "1"
    assert small.headers["x-ratelimit-limit-requests"] == "3"
    assert small2.headers["x-ratelimit-remaining-requests"] == "0"
    assert "across models" in account_refused.json()["error"]["message"]
    assert stats["rate_limited_by_level"] == {"model": 1, "account": 1}
    assert stats["accepted_per_minute_max_by_model"] == {"sim-large": 1, "sim-small": 3}


def test_account_and_model_limits_change_live() -> None:
    clock = FakeClock()
    messages = [{"role": "user", "content": "hello"}]

    async def scenario(client: httpx.AsyncClient) -> tuple[dict[str, Any], list[int], httpx.Response]:
        change = {"account_rpm": 1, "model_limits": "sim-large=5/0"}
        view = (await client.post("/admin/faults", json=change)).json()
        codes = [(await chat(client, messages, model=m)).status_code for m in ("sim-large", "sim-small")]
        bad = await client.post("/admin/faults", json={"model_limits": "sim-large=x"})
        return view, codes, bad

    view, codes, bad = run(make_app(clock=clock), scenario)
    assert view["account_rpm"] == 1 and view["model_limits"] == {"sim-large": [5, 0]}
    assert codes == [200, 429]
    assert bad.status_code == 400


def test_prompts_are_recorded_only_while_recording_is_on() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        await chat(client, [{"role": "user", "content": "before"}])
        started = await client.post("/admin/prompts", json={"record": True})
        await chat(client, [{"role": "system", "content": "be brief"}, {"role": "user", "content": "during"}],
                   tools=TOOLS)
        during = (await client.get("/admin/prompts")).json()
        stopped = await client.post("/admin/prompts", json={"record": False})
        await chat(client, [{"role": "user", "content": "after"}])
        bad = await client.post("/admin/prompts", json={"recrod": True})
        return [started.json(), during, stopped.json(), bad.status_code]

    started, during, stopped, bad = run(make_app(), scenario)
    assert started == {"recording": True, "prompts": []}
    assert during["recording"] and len(during["prompts"]) == 1
    prompt = during["prompts"][0]
    roles_and_texts = [(m["role"], m["content"]) for m in prompt["messages"]]
    assert roles_and_texts == [("system", "be brief"), ("user", "during")]
    assert prompt["model"] == "sim-small" and prompt["tools"] == [t["function"]["name"] for t in TOOLS]
    assert stopped == {"recording": False, "prompts": []}
    assert bad == 400
