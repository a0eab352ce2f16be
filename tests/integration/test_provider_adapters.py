"""The support-ticket flow through each provider adapter, against a server nobody here wrote:
`fakellm` (PyPI), which speaks OpenAI's and Anthropic's HTTP APIs and answers by rules in a YAML
file. Real router and billing workers of this test's own (private vhost) run with
SWITCHBOARD_PROVIDER_KIND=openai against fakellm's /v1/chat/completions, =anthropic against its
/v1/messages, and =azure against its OpenAI API behind a shim with Azure's path layout (fakellm
has none; see tests/support/azure_shim.py). Each kind runs three tickets: one with a tool call,
one whose first call is refused with 429, one whose first call gets a 5xx (Anthropic: 529
overloaded); all three succeed, and the record shows the retries, the tokens and the cost."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select, text

from app.ingress import client
from app.ops.pools import ProcessSpec, pool_specs
from app.ops.supervisor import Supervisor, wait_for_workers, wait_http
from app.state import LlmCall, Request, session_scope
from tests import conftest as root
from tests.support.azure_shim import AzureShim

REPLY = "Invoice checked: it is eligible for a refund, which reaches your card in 5-10 business days."
SUMMARY = "The customer asks for a refund of a duplicate charge on an invoice."
AZURE_API_VERSION = "2024-10-21"
# Per kind: the tiers' models (the capable one of OpenAI's gpt-5 family, which takes
# max_completion_tokens), and the status of the injected server failure.
MODELS = {
    "openai": ("gpt-4o-mini", "gpt-5-mini", 503),
    "azure": ("gpt-4o-mini", "gpt-5-mini", 503),
    "anthropic": ("claude-haiku-4-5", "claude-sonnet-4-5", 529),
}
PRICES = {"gpt-4o-mini": ("0.15", "0.60"), "gpt-5-mini": ("0.25", "2.00"),
          "claude-haiku-4-5": ("1.00", "5.00"), "claude-sonnet-4-5": ("3.00", "15.00")}


def _paid_invoice() -> str:
    with session_scope() as session:
        return session.execute(text(
            "SELECT i.id FROM invoices i WHERE i.status = 'paid' "
            "AND i.issued_at > now() - interval '20 days' AND i.amount_usd <= 500 ORDER BY i.id LIMIT 1"
        )).scalar_one()


def _customer_of(invoice: str) -> str:
    with session_scope() as session:
        found = session.execute(text("SELECT customer FROM invoices WHERE id = :id"), {"id": invoice})
        return str(found.scalar_one())


def _rules(invoice: str, server_error: int) -> dict[str, object]:
    """fakellm's rules: first match wins; a conversation is keyed by its first user message (the
    ticket), and its turns count every call of the ticket's flow."""
    return {"rules": [
        {"name": "refuse_with_429", "when": {"turn": 1, "messages_contain": "scenario-429"},
         "respond": {"status": 429, "error": "Rate limit reached for requests"}},
        {"name": "server_error", "when": {"turn": 1, "messages_contain": "scenario-5xx"},
         "respond": {"status": server_error, "error": "Overloaded"}},
        {"name": "understand", "when": {"messages_contain": "Summarise the customer's request"},
         "respond": {"content": SUMMARY}},
        {"name": "answer", "when": {"tool_result_contains": "eligible"}, "respond": {"content": REPLY}},
        {"name": "call_tool", "when": {"tools_include": "check_refund_eligibility"},
         "respond": {"tool_calls": [{"name": "check_refund_eligibility",
                                     "arguments": {"invoice_id": invoice}}]}},
    ]}


def _serve_fakellm(sup: Supervisor, rules: dict[str, object], tmp_path: Path) -> str:
    """fakellm (its own console script, from this venv) on a free loopback port; its root URL."""
    config = tmp_path / "fakellm.yaml"
    config.write_text(yaml.safe_dump(rules))
    port = root._free_port()
    argv = [str(Path(sys.executable).parent / "fakellm"), "serve", "--host", "127.0.0.1", "--port", str(port),
            "--config", str(config)]
    sup.start(ProcessSpec("fakellm", argv))
    wait_http(f"http://127.0.0.1:{port}/_fakellm/stats", 30)
    return f"http://127.0.0.1:{port}"


@dataclass
class Stack:
    kind: str
    fakellm: str
    shim: AzureShim | None


@pytest.fixture(params=["openai", "anthropic", "azure"])
def stack(request: pytest.FixtureRequest, private_broker: str, tmp_path: Path) -> Iterator[Stack]:
    """fakellm, and router and billing workers speaking to it with this kind's adapter."""
    kind: str = request.param
    cheap, capable, server_error = MODELS[kind]
    with Supervisor(tmp_path, restart=False) as sup:
        fakellm = _serve_fakellm(sup, _rules(_paid_invoice(), server_error), tmp_path)
        shim = AzureShim(fakellm, AZURE_API_VERSION, root._free_port()) if kind == "azure" else None
        with shim or contextlib.nullcontext():
            env = {
                "SWITCHBOARD_PROVIDER_KIND": kind,
                "SWITCHBOARD_PROVIDER_BASE_URL": {"openai": f"{fakellm}/v1", "anthropic": fakellm,
                                                  "azure": shim.base_url if shim else ""}[kind],
                "SWITCHBOARD_CHEAP_MODEL": cheap,
                "SWITCHBOARD_CAPABLE_MODEL": capable,
                "SWITCHBOARD_PRICES": ",".join(f"{m}={i}/{o}" for m, (i, o) in PRICES.items()),
                "SWITCHBOARD_AZURE_API_VERSION": AZURE_API_VERSION,
                "SWITCHBOARD_AZURE_DEPLOYMENTS": "gpt-5-mini=support-gpt5",
            }
            for spec in pool_specs(queues=["router", "billing"]):
                sup.start(replace(spec, env={**spec.env, **env}))
            wait_for_workers(["router", "billing"], timeout=120)
            yield Stack(kind, fakellm, shim)


def _calls(request_id: str) -> list[LlmCall]:
    with session_scope() as session:
        query = select(LlmCall).where(LlmCall.request_id == request_id).order_by(LlmCall.id)
        return list(session.scalars(query))


def test_ticket_flow_with_a_tool_call_a_429_and_a_5xx(stack: Stack) -> None:
    kind = stack.kind
    invoice = _paid_invoice()
    tickets = {
        "tool": f"[{kind}] I was charged twice for {invoice} this month, can I get a refund?",
        "429": f"[{kind}] scenario-429: please refund {invoice}, it was a duplicate charge.",
        "5xx": f"[{kind}] scenario-5xx: refund {invoice} please, I was billed twice.",
    }
    # From the invoice's own customer: the tool sees only that customer's invoices.
    customer = _customer_of(invoice)
    ids = {name: client.submit(ticket, customer=customer).id for name, ticket in tickets.items()}
    views = {name: client.wait(rid, timeout=120) for name, rid in ids.items()}

    for name, view in views.items():
        assert view.status == "succeeded", (name, view.error)
        assert view.specialist == "billing"
        assert view.result["reply"] == REPLY
        assert view.result["tool_calls"] == [{"tool": "check_refund_eligibility", "ok": True}]
        assert view.attempts == 1
    failed = {name: [c.outcome for c in _calls(rid) if c.outcome != "ok"] for name, rid in ids.items()}
    assert failed == {"tool": [], "429": ["rate_limited"], "5xx": ["server_error"]}

    for name, rid in ids.items():
        calls = _calls(rid)
        ok = [c for c in calls if c.outcome == "ok"]
        # understand, then the draft's tool call and its answer after the tool result
        assert [(c.step, c.model) for c in ok] == [
            ("understand", MODELS[kind][0]), ("draft", MODELS[kind][1]), ("draft", MODELS[kind][1])
        ]
        assert all(c.prompt_tokens > 0 and c.completion_tokens > 0 for c in ok)
        for c in ok:
            per_in, per_out = (Decimal(p) for p in PRICES[c.model])
            expected = ((per_in * c.prompt_tokens + per_out * c.completion_tokens) / 1_000_000).quantize(
                Decimal("0.000001"))
            assert c.cost_usd == expected and c.cost_usd > 0
        retried = [c for c in ok if c.retries]
        assert [c.step for c in retried] == ([] if name == "tool" else ["understand"])
        with session_scope() as session:
            row = session.get(Request, rid)
            assert row is not None
            assert row.prompt_tokens == sum(c.prompt_tokens for c in ok)
            assert row.completion_tokens == sum(c.completion_tokens for c in ok)
            assert row.cost_usd == sum(c.cost_usd for c in ok)

    stats = httpx.get(f"{stack.fakellm}/_fakellm/stats", timeout=5).json()
    assert stats["by_rule"] == {"refuse_with_429": 1, "server_error": 1, "understand": 3, "call_tool": 3,
                                "answer": 3}
    api = "anthropic" if kind == "anthropic" else "openai"
    assert {r["api"] for r in stats["recent"]} == {api}
    if stack.shim is not None:
        seen = stack.shim.seen
        assert len(seen) == 11
        assert all(s.api_version == AZURE_API_VERSION and s.api_key and s.authorization is None for s in seen)
        # The capable model's deployment is mapped; the cheap one is named as the model.
        assert {s.deployment for s in seen} == {"gpt-4o-mini", "support-gpt5"}
        drafts = [s.body for s in seen if s.deployment == "support-gpt5"]
        assert drafts and all("max_completion_tokens" in b and "max_tokens" not in b for b in drafts)
        assert all("max_tokens" in s.body for s in seen if s.deployment == "gpt-4o-mini")


def test_structured_output_through_the_anthropic_adapter(services: object, tmp_path: Path) -> None:
    """A JSON-schema response_format reaches fakellm's Messages API as a forced tool whose input
    comes back as the answer's JSON content."""
    from app.inference import provider
    from app.inference.adapters import ChatRequest, adapter_for
    from app.inference.adapters.anthropic_messages import STRUCTURED_TOOL

    rules = {"rules": [
        {"name": "structured", "when": {"tools_include": STRUCTURED_TOOL},
         "respond": {"tool_calls": [{"name": STRUCTURED_TOOL,
                                     "arguments": {"summary": SUMMARY, "invoice_id": "INV-1042"}}]}},
    ]}
    text_field = {"type": "string"}
    schema = {"type": "object", "properties": {"summary": text_field, "invoice_id": text_field},
              "required": ["summary", "invoice_id"]}
    with Supervisor(tmp_path, restart=False) as sup:
        fakellm = _serve_fakellm(sup, rules, tmp_path)
        answer = provider.chat(
            adapter_for("anthropic"), base_url=fakellm, api_key="k", key_id="key-1",
            request=ChatRequest("claude-haiku-4-5", [{"role": "user", "content": "Refund INV-1042"}],
                                response_format={"type": "json_schema",
                                                 "json_schema": {"name": "Triage", "schema": schema}}),
        )
        stats = httpx.get(f"{fakellm}/_fakellm/stats", timeout=5).json()
    assert json.loads(answer.content or "") == {"summary": SUMMARY, "invoice_id": "INV-1042"}
    assert answer.tool_calls == [] and answer.finish_reason == "stop"
    assert stats["by_rule"] == {"structured": 1} and stats["recent"][0]["api"] == "anthropic"
