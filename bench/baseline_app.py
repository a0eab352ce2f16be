"""The baseline for bench/pipeline.py: a hand-written Celery app doing Switchboard's essential work.

A router task classifies the ticket with the same classifier and publishes it to the specialist's
queue; the specialist task makes a given number of chat-completion calls with one pooled httpx
client per process (bodies shaped like Switchboard's: a cheap "understand" call, then capable-model
calls with the specialist's system prompt, the context, the ticket and its tool schemas, with the
tool calls and results appended as the agent loop would), then inserts one result row.

By default it leaves out what the benchmark attributes to the engine: the
durable record (request row, status transitions, event log, step checkpoints, LLM-call rows),
retrieval and tool queries against the business tables, publisher confirms, task events, priority
queues and the workflow thread pools.

With `business=True` (the "baseline_business" phases) it also does the specialists' own business
work exactly as Switchboard's workflow does: the specialist's `retrieve` (its context goes into the
draft instead of filler) and every tool call the model asks for, run by the specialist's tool
functions against a seeded copy of the business tables (SWITCHBOARD_DATABASE_URL of the baseline
workers points at the baseline's own database). What remains between Switchboard and that baseline
is the engine alone.

Configured by BENCH_BASELINE_BROKER_URL, BENCH_BASELINE_DATABASE_URL, BENCH_BASELINE_PROVIDER_URL.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

import httpx
from celery import Celery
from kombu import Queue
from sqlalchemy import Engine, create_engine, text

from app.orchestration.registry import specialists

log = logging.getLogger(__name__)

ROUTE_TASK = "bench.route"
SPECIALIST_TASK = "bench.specialist"
ROUTER_QUEUE = "router"
SPECIALISTS = sorted(specialists())

UNDERSTAND_PROMPT = (
    "Summarise the customer's request in one sentence, naming any account e-mail, "
    "invoice id, product area and error message it mentions."
)
RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS bench_results (
    id BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    tag TEXT NOT NULL,
    specialist TEXT NOT NULL,
    reply TEXT NOT NULL,
    calls INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_bench_results_tag ON bench_results (tag);
"""

app = Celery("baseline")
app.conf.update(
    broker_url=os.environ.get("BENCH_BASELINE_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    broker_connection_retry_on_startup=True,
    task_queues=[Queue(name, routing_key=name, durable=True) for name in [ROUTER_QUEUE, *SPECIALISTS]],
    task_default_queue=ROUTER_QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)

_lock = threading.Lock()
_client: httpx.Client | None = None
_engine: Engine | None = None


def http() -> httpx.Client:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = httpx.Client(
                    base_url=os.environ["BENCH_BASELINE_PROVIDER_URL"].rstrip("/") + "/",
                    timeout=httpx.Timeout(30.0, connect=5.0),
                    limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
                )
    return _client


def engine() -> Engine:
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = create_engine(os.environ["BENCH_BASELINE_DATABASE_URL"], pool_size=5, max_overflow=5)
    return _engine


def chat(model: str, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
         max_tokens: int = 512) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if tools:
        body["tools"] = tools
    response = http().post("chat/completions", json=body, headers={"Authorization": "Bearer sk-baseline"})
    response.raise_for_status()
    return response.json()


@app.task(name=ROUTE_TASK)
def route(request_id: str, ticket: str, calls: int, context_chars: int, tag: str, business: bool = False,
          tenant: str = "default") -> None:
    from app.orchestration.classifier import classifier

    specialist = classifier().predict(ticket).specialist
    app.send_task(SPECIALIST_TASK, args=[request_id, specialist, ticket, calls, context_chars, tag, business, tenant],
                  queue=specialist, routing_key=specialist)


@app.task(name=SPECIALIST_TASK)
def run_specialist(request_id: str, specialist: str, ticket: str, calls: int, context_chars: int, tag: str,
                   business: bool = False, tenant: str = "default") -> None:
    from app.orchestration.specialist import ToolContext

    spec = specialists()[specialist]
    prompt_tokens = 0
    reply = ""
    summary = ""
    if calls >= 1:
        payload = chat("sim-small", [{"role": "system", "content": UNDERSTAND_PROMPT},
                                     {"role": "user", "content": ticket}], max_tokens=120)
        summary = payload["choices"][0]["message"].get("content") or ""
        reply = summary
        prompt_tokens += payload.get("usage", {}).get("prompt_tokens", 0)
    # Switchboard's draft sees the retrieved context as JSON (capped at 6000 characters); the same
    # amount of filler keeps the bodies the same size.
    context = ("x" * context_chars)[:6000]
    if business and spec.retrieve is not None:
        retrieved = spec.retrieve(ToolContext(request_id, tenant, "retrieve"), ticket)
        context = json.dumps(retrieved, default=str)[:6000]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": spec.system_prompt},
        {"role": "system", "content": f"Ticket summary: {summary}\nContext from our systems: {context}"},
        {"role": "user", "content": ticket},
    ]
    tools = [tool.schema() for tool in spec.tools] or None
    for _ in range(max(0, calls - 1)):
        payload = chat("sim-large", messages, tools=tools)
        prompt_tokens += payload.get("usage", {}).get("prompt_tokens", 0)
        message = payload["choices"][0]["message"]
        reply = message.get("content") or reply
        tool_calls = message.get("tool_calls") or []
        messages.append({"role": "assistant", "content": message.get("content"), **(
            {"tool_calls": tool_calls} if tool_calls else {})})
        for call in tool_calls:
            name = call["function"]["name"]
            tool = spec.tool(name) if business else None
            if tool is None:
                result: dict[str, Any] = {"ok": True, "tool": name}
            else:
                try:
                    result = tool.invoke(ToolContext(request_id, tenant, "draft"),
                                         call["function"].get("arguments") or "{}")
                except Exception as exc:  # noqa: BLE001 - the model sees the failure, as it would in Switchboard
                    log.warning("tool %s failed for %s: %s", name, request_id, exc)
                    result = {"error": f"{type(exc).__name__}: {exc}"}
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result, default=str)})
        if not tool_calls:
            # Switchboard's loop would stop here; the baseline keeps the call count fixed.
            messages.append({"role": "user", "content": "Anything else?"})
    with engine().begin() as conn:
        conn.execute(
            text("INSERT INTO bench_results (request_id, tag, specialist, reply, calls, prompt_tokens) "
                 "VALUES (:r, :t, :s, :b, :c, :p) ON CONFLICT (request_id) DO NOTHING"),
            {"r": request_id, "t": tag, "s": specialist, "b": reply, "c": calls, "p": prompt_tokens},
        )


def submit(request_id: str, ticket: str, calls: int, context_chars: int, tag: str, business: bool = False,
           tenant: str = "default") -> None:
    app.send_task(ROUTE_TASK, args=[request_id, ticket, calls, context_chars, tag, business, tenant],
                  queue=ROUTER_QUEUE, routing_key=ROUTER_QUEUE)


def worker_argv(queue: str, concurrency: int, python: str) -> list[str]:
    """The same worker command as Switchboard's pools, minus task events (-E)."""
    return [
        python, "-m", "celery", "-A", "bench.baseline_app:app", "worker",
        "-Q", queue, "-n", f"base-{queue}@%h", "-P", "threads", "-c", str(concurrency),
        "--without-gossip", "--without-mingle", "-l", "INFO",
    ]
