"""The durable peer for bench/peer.py: Switchboard's support-ticket flow written on DBOS Transact.

The same business work as workflows/support_ticket.py and the specialists, as a DBOS user would
write it: a `route_ticket` workflow on the "router" queue (the same rules and classifier, the same
cheap-LLM fallback when the classifier is unsure) enqueues `handle_ticket` on the specialist's queue,
which runs understand, retrieve (the specialist's own function), the draft agent loop (the same
system prompt, context, tool schemas and tool functions, against the same seeded business tables)
and deliver (one result row, idempotent on the request id). Every LLM call, tool call and the
delivery is a `@DBOS.step`, so DBOS checkpoints each in its system database and a workflow
interrupted by a crash resumes after its last finished step.

One process per queue, as Switchboard runs one pool per queue: `python -m bench.peer_dbos_app
QUEUE --concurrency C` listens to that queue only, with `worker_concurrency=C` and a unique
executor id (DBOS's docs: worker_concurrency counts per executor_id, which must be unique per
process when Conductor is not used).

Configured by BENCH_PEER_DATABASE_URL (the system database; the business tables and the results
table live there too, and SWITCHBOARD_DATABASE_URL must point at it for the tool functions) and
BENCH_PEER_PROVIDER_URL (the simulated provider).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import threading
from typing import Any

import httpx
from dbos import DBOS, DBOSConfig
from sqlalchemy import text

from app.orchestration.registry import specialists
from app.orchestration.routing import _routing_prompt, decide
from app.orchestration.specialist import ToolContext, ToolError
from app.state import session_scope
from workflows.support_ticket import HANDOFF_TOOL, WANTS_A_PERSON

APP_NAME = "switchboard-peer"
APP_VERSION = "peer-1"
ROUTER_QUEUE = "router"
QUEUES = [ROUTER_QUEUE, *sorted(specialists())]
CHEAP_MODEL, CAPABLE_MODEL = "sim-small", "sim-large"
UNDERSTAND_PROMPT = (
    "Summarise the customer's request in one sentence, naming any account e-mail, "
    "invoice id, product area and error message it mentions."
)
RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS peer_results (
    request_id TEXT PRIMARY KEY,
    tag TEXT NOT NULL,
    specialist TEXT NOT NULL,
    status TEXT NOT NULL,
    reply TEXT NOT NULL,
    tool_calls JSONB NOT NULL,
    llm_calls INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_peer_results_tag ON peer_results (tag);
"""

_lock = threading.Lock()
_client: httpx.Client | None = None


def http() -> httpx.Client:
    """One pooled client per process, as Switchboard keeps one kept-alive connection per thread."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = httpx.Client(
                    base_url=os.environ["BENCH_PEER_PROVIDER_URL"].rstrip("/") + "/",
                    timeout=httpx.Timeout(60.0, connect=5.0),
                    limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
                )
    return _client


# --- steps: each is checkpointed by DBOS -------------------------------------------------------


@DBOS.step(name="peer.chat", retries_allowed=True, max_attempts=3, interval_seconds=0.5)
def chat(body: dict[str, Any]) -> dict[str, Any]:
    """One chat completion: the message and usage are what the workflow keeps."""
    response = http().post("chat/completions", json=body, headers={"Authorization": "Bearer sk-peer"})
    response.raise_for_status()
    payload = response.json()
    return {"message": payload["choices"][0]["message"], "usage": payload.get("usage", {})}


@DBOS.step(name="peer.classify")
def classify(ticket: str) -> dict[str, str]:
    decision = decide(ticket, use_llm=False)
    return {"specialist": decision.specialist, "method": decision.method}


@DBOS.step(name="peer.retrieve", retries_allowed=True, max_attempts=3, interval_seconds=0.5)
def retrieve(specialist: str, ctx: dict[str, Any], ticket: str) -> dict[str, Any]:
    spec = specialists()[specialist]
    if spec.retrieve is None:
        return {}
    try:
        return json.loads(json.dumps(spec.retrieve(ToolContext(**ctx, step="retrieve"), ticket), default=str))
    except ToolError as refused:
        return {"note": str(refused)}


@DBOS.step(name="peer.tool")
def run_tool(specialist: str, ctx: dict[str, Any], name: str, arguments: str) -> dict[str, Any]:
    """One tool call as Switchboard's draft runs it: parse, ask whether a person must approve, call."""
    spec = specialists()[specialist]
    tool = spec.tool(name)
    if tool is None:
        return {"result": {"error": f"no tool named {name!r}"}}
    tool_ctx = ToolContext(**ctx, step="draft")
    args = tool.parse(arguments)
    if isinstance(args, dict):
        return {"result": args}
    try:
        why = tool.needs_approval(tool_ctx, args)
    except ToolError as refused:
        return {"result": {"error": str(refused)}}
    if why is not None:
        return {"approval": why}
    return {"result": json.loads(json.dumps(tool.call(tool_ctx, args), default=str))}


@DBOS.step(name="peer.deliver", retries_allowed=True, max_attempts=3, interval_seconds=0.5)
def deliver(result: dict[str, Any]) -> None:
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO peer_results (request_id, tag, specialist, status, reply, tool_calls, llm_calls) "
                "VALUES (:request_id, :tag, :specialist, :status, :reply, CAST(:tool_calls AS jsonb), :llm_calls) "
                "ON CONFLICT (request_id) DO NOTHING"
            ),
            {**result, "tool_calls": json.dumps(result["tool_calls"])},
        )


# --- workflows -------------------------------------------------------------------------------------


@DBOS.workflow(name="peer.route_ticket")
def route_ticket(ticket: dict[str, Any]) -> str:
    decision = classify(ticket["text"])
    specialist = decision["specialist"]
    if decision["method"] == "fallback":  # the classifier is unsure: Switchboard asks the cheap model
        answer = chat(
            {
                "model": CHEAP_MODEL,
                "max_tokens": 5,
                "messages": [
                    {"role": "system", "content": _routing_prompt()},
                    {"role": "user", "content": ticket["text"]},
                ],
            }
        )
        word = re.sub(r"[^a-z0-9_]", "", (answer["message"].get("content") or "").strip().lower())
        specialist = word if word in specialists() else specialist
    DBOS.enqueue_workflow(specialist, handle_ticket, ticket, specialist)
    return specialist


@DBOS.workflow(name="peer.handle_ticket")
def handle_ticket(ticket: dict[str, Any], specialist: str) -> str:
    spec = specialists()[specialist]
    ctx = {"request_id": ticket["id"], "tenant": ticket["tenant"], "customer": ticket.get("customer")}
    calls = 0
    used: list[dict[str, Any]] = []

    def finish(status: str, reply: str) -> str:
        deliver(
            {
                "request_id": ticket["id"],
                "tag": ticket["tag"],
                "specialist": specialist,
                "status": status,
                "reply": reply,
                "tool_calls": used,
                "llm_calls": calls,
            }
        )
        return status

    understood = chat(
        {
            "model": CHEAP_MODEL,
            "max_tokens": 120,
            "messages": [
                {"role": "system", "content": UNDERSTAND_PROMPT},
                {"role": "user", "content": ticket["text"]},
            ],
        }
    )
    calls += 1
    context = retrieve(specialist, ctx, ticket["text"])
    if WANTS_A_PERSON.search(ticket["text"]):
        return finish("needs_human", "")
    summary = understood["message"].get("content") or ""
    tools = [tool.schema() for tool in spec.tools] + [HANDOFF_TOOL.schema()]
    model = CAPABLE_MODEL if spec.model_tier == "capable" else CHEAP_MODEL
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": spec.system_prompt},
        {
            "role": "system",
            "content": f"Ticket summary: {summary}\nContext from our systems: "
            f"{json.dumps(context, default=str)[:6000]}",
        },
        {"role": "user", "content": ticket["text"]},
    ]
    for _ in range(spec.max_tool_steps):
        answer = chat({"model": model, "max_tokens": 512, "messages": messages, "tools": tools})
        calls += 1
        message = answer["message"]
        tool_calls = message.get("tool_calls") or []
        if not tool_calls:
            return finish("succeeded", message.get("content") or "")
        messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": tool_calls})
        for call in tool_calls:
            name, arguments = call["function"]["name"], call["function"].get("arguments") or "{}"
            if name == HANDOFF_TOOL.name:
                return finish("needs_human", "")
            outcome = run_tool(specialist, ctx, name, arguments)
            if "approval" in outcome:
                # Switchboard parks the step and frees its thread; the DBOS way to wait is
                # DBOS.recv, which would hold a queue slot, so this records the parked state and
                # ends (a decision would start the continuation).
                used.append({"tool": name, "approval": outcome["approval"]})
                return finish("awaiting_approval", "")
            used.append({"tool": name, "ok": "error" not in outcome["result"]})
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "content": json.dumps(outcome["result"], default=str),
                }
            )
    answer = chat({"model": model, "max_tokens": 512, "messages": messages})
    calls += 1
    return finish("succeeded", answer["message"].get("content") or "")


# --- a worker process --------------------------------------------------------------------------------


def config(executor_id: str) -> DBOSConfig:
    return {
        "name": APP_NAME,
        "system_database_url": os.environ["BENCH_PEER_DATABASE_URL"],
        "application_version": APP_VERSION,
        "executor_id": executor_id,
        "log_level": "WARNING",
        # The bench migrates the system database once (`dbos migrate`) before any worker starts.
        "run_migrations": False,
    }


def register_queues(concurrency: int, polling_s: float) -> None:
    for name in QUEUES:
        DBOS.register_queue(
            name, worker_concurrency=concurrency, polling_interval_sec=polling_s, on_conflict="always_update"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one DBOS worker process of the peer benchmark")
    parser.add_argument("queue", choices=QUEUES)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--polling-s", type=float, default=0.1)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    DBOS(config=config(f"{args.queue}-{os.getpid()}"))
    DBOS.listen_queues([args.queue])
    DBOS.launch()
    register_queues(args.concurrency, args.polling_s)
    print(f"peer worker {args.queue} ready", flush=True)
    stop.wait()
    DBOS.destroy(workflow_completion_timeout_sec=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
