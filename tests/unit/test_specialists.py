"""The billing and technical specialists and the surge generator, without any service.

Nothing here touches the database: tool calls with bad arguments are refused before they run.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.ops.surge import POISON_MARKER, POISON_TEXT, TENANTS, Ticket, monday_morning
from app.orchestration.registry import specialists
from app.orchestration.specialist import Specialist, Tool, ToolContext, ToolError, in_tenant, owned

EVAL_PATH = Path(__file__).resolve().parents[1] / "data" / "routing_eval.jsonl"
NAMES = ("billing", "technical")
CTX = ToolContext(request_id="00000000-0000-0000-0000-000000000000", tenant="acme", step="agent")
EMAILS = [f"user{i}@example.com" for i in range(12)]
INVOICES = [f"INV-{1001 + i}" for i in range(40)]


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _eval_rows() -> list[dict[str, str]]:
    return [json.loads(line) for line in EVAL_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


def _spec(name: str) -> Specialist:
    return specialists()[name]


def _all_tools() -> list[Tool[Any]]:
    return [tool for name in NAMES for tool in _spec(name).tools]


# --- Registry and routing examples -------------------------------------------------------------


def test_registry_finds_billing_and_technical() -> None:
    found = specialists()
    for name in NAMES:
        assert isinstance(found[name], Specialist)
        assert found[name].model_tier == "capable"
        assert found[name].retrieve is not None
        assert found[name].description and "\n" not in found[name].description


@pytest.mark.parametrize("name", NAMES)
def test_each_specialist_has_enough_distinct_routing_examples(name: str) -> None:
    examples = _spec(name).routing_examples
    assert len({_norm(e) for e in examples}) >= 25
    assert len({_norm(e) for e in examples}) == len(examples), "duplicate routing examples"


def test_routing_examples_are_not_shared_between_specialists() -> None:
    billing = {_norm(e) for e in _spec("billing").routing_examples}
    technical = {_norm(e) for e in _spec("technical").routing_examples}
    assert billing.isdisjoint(technical)


def test_routing_examples_do_not_appear_in_the_held_out_eval_set() -> None:
    held_out = {_norm(row["text"]) for row in _eval_rows()}
    for name in NAMES:
        leaked = [e for e in _spec(name).routing_examples if _norm(e) in held_out]
        assert not leaked, f"{name} routing examples copied into routing_eval.jsonl: {leaked}"


def test_eval_set_is_well_formed_and_balanced() -> None:
    rows = _eval_rows()
    assert len(rows) >= 80
    assert all(set(row) == {"text", "specialist"} and row["text"].strip() for row in rows)
    counts = Counter(row["specialist"] for row in rows)
    assert set(counts) == set(NAMES)
    assert abs(counts["billing"] - counts["technical"]) <= len(rows) * 0.2
    assert len({_norm(row["text"]) for row in rows}) == len(rows)


@pytest.mark.parametrize("name", NAMES)
def test_rules_never_claim_the_other_specialists_tickets(name: str) -> None:
    # Rules bypass the classifier, so one firing on the other kind's text is a misroute.
    spec = _spec(name)
    assert spec.compiled_rules
    other = next(n for n in NAMES if n != name)
    texts = list(_spec(other).routing_examples)
    texts += [r["text"] for r in _eval_rows() if r["specialist"] == other]
    texts += [t.text for t in monday_morning(300, emails=EMAILS, invoice_ids=INVOICES) if t.expected == other]
    fired = [t for t in texts if any(rule.search(t) for rule in spec.compiled_rules)]
    assert not fired, f"{name} rules match {other} tickets: {fired[:3]}"


# --- Tools -------------------------------------------------------------------------------------


def test_expected_tools_are_declared() -> None:
    assert [t.name for t in _spec("billing").tools] == [
        "get_account",
        "list_invoices",
        "check_refund_eligibility",
        "issue_refund",
    ]
    assert [t.name for t in _spec("technical").tools] == ["search_kb", "check_service_status"]
    side_effects = {t.name for t in _all_tools() if t.side_effect}
    assert side_effects == {"issue_refund"}


@pytest.mark.parametrize("tool", _all_tools(), ids=lambda t: t.name)
def test_tool_schema_is_a_valid_openai_tool_entry(tool: Tool[Any]) -> None:
    entry = tool.schema()
    assert entry["type"] == "function"
    function = entry["function"]
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", function["name"]) and function["name"] == tool.name
    assert isinstance(function["description"], str) and function["description"]
    params = function["parameters"]
    assert params["type"] == "object"
    assert isinstance(params.get("properties"), dict) and params["properties"]
    assert set(params.get("required", [])) <= set(params["properties"])
    for prop_name, prop in params["properties"].items():
        assert prop.get("description"), f"{tool.name}.{prop_name} has no description"
    json.dumps(entry)


BAD_ARGUMENTS = ["{not json", "[1, 2]", '"text"', '{"limit": "lots", "email": 7, "component": 5}']


@pytest.mark.parametrize("tool", _all_tools(), ids=lambda t: t.name)
@pytest.mark.parametrize("raw", BAD_ARGUMENTS)
def test_tool_invoke_with_bad_arguments_returns_an_error(tool: Tool[Any], raw: str) -> None:
    result = tool.invoke(CTX, raw)
    assert set(result) == {"error"}
    assert tool.name in result["error"]


@pytest.mark.parametrize(
    ("tool_name", "args"),
    [
        ("get_account", {"email": "not-an-email"}),
        ("list_invoices", {"email": "a@example.com", "limit": 0}),
        ("check_refund_eligibility", {"invoice_id": "1042"}),
        ("issue_refund", {"invoice_id": "INV-1042"}),
        ("issue_refund", {"invoice_id": "INV-1042", "reason": ""}),
        ("search_kb", {"query": ""}),
        ("search_kb", {"query": "webhooks", "limit": 50}),
    ],
)
def test_tool_invoke_validates_argument_values(tool_name: str, args: dict[str, Any]) -> None:
    tool = next(t for t in _all_tools() if t.name == tool_name)
    assert "error" in tool.invoke(CTX, json.dumps(args))


# --- Surge -------------------------------------------------------------------------------------


def test_surge_is_deterministic() -> None:
    first = monday_morning(200, emails=EMAILS, invoice_ids=INVOICES)
    assert first == monday_morning(200, emails=EMAILS, invoice_ids=INVOICES)
    assert first != monday_morning(200, emails=EMAILS, invoice_ids=INVOICES, seed=7)
    assert all(isinstance(t, Ticket) for t in first)


@pytest.mark.parametrize("n", [0, 1, 37, 200, 1000])
def test_surge_gives_n_tickets(n: int) -> None:
    assert len(monday_morning(n, emails=EMAILS, invoice_ids=INVOICES)) == n


def test_surge_mix_matches_the_stated_shares() -> None:
    n = 200
    tickets = monday_morning(n, emails=EMAILS, invoice_ids=INVOICES)
    kinds = Counter(t.expected for t in tickets)
    priorities = Counter(t.priority for t in tickets)
    tenants = Counter(t.tenant for t in tickets)
    assert set(kinds) == set(NAMES)
    assert abs(kinds["technical"] / n - 0.55) <= 0.05
    assert abs(priorities["high"] / n - 0.15) <= 0.05
    assert abs(priorities["normal"] / n - 0.65) <= 0.05
    assert abs(priorities["low"] / n - 0.20) <= 0.05
    assert set(tenants) == set(TENANTS)
    assert min(tenants.values()) >= n * 0.15


def test_surge_uses_the_given_emails_and_invoice_ids() -> None:
    tickets = monday_morning(200, emails=EMAILS, invoice_ids=INVOICES)
    texts = [t.text for t in tickets]
    emails = {e for text in texts for e in re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+\w", text)}
    invoices = {i for text in texts for i in re.findall(r"\bINV-\d+\b", text)}
    assert emails and emails <= set(EMAILS)
    assert invoices and invoices <= set(INVOICES)
    # No template placeholder is left unfilled.
    assert not any(re.search(r"\{[a-z_]+\}", text) for text in texts)


def test_surge_tickets_vary_and_are_not_routing_examples() -> None:
    tickets = monday_morning(200, emails=EMAILS, invoice_ids=INVOICES)
    assert len({t.text for t in tickets}) >= 100
    examples = {_norm(e) for name in NAMES for e in _spec(name).routing_examples}
    assert not [t.text for t in tickets if _norm(t.text) in examples]


def test_surge_needs_emails_and_invoice_ids() -> None:
    with pytest.raises(ValueError):
        monday_morning(5, emails=[], invoice_ids=INVOICES)
    with pytest.raises(ValueError):
        monday_morning(5, emails=EMAILS, invoice_ids=[])


def test_poison_ticket_looks_like_billing_and_carries_the_marker() -> None:
    assert POISON_MARKER == "[[sim:fail]]"
    assert POISON_MARKER in POISON_TEXT
    assert re.search(r"charged|invoice|payment", POISON_TEXT, re.IGNORECASE)
    assert not any(POISON_MARKER in t.text for t in monday_morning(300, emails=EMAILS, invoice_ids=INVOICES))


def test_surge_tickets_carry_the_customer_they_are_about() -> None:
    owners = {invoice: EMAILS[i % len(EMAILS)] for i, invoice in enumerate(INVOICES)}
    tickets = monday_morning(200, emails=EMAILS, invoice_ids=INVOICES, owners=owners, tenant="default")
    unowned = monday_morning(200, emails=EMAILS, invoice_ids=INVOICES)
    assert [t.text for t in tickets] == [t.text for t in unowned]
    assert {t.tenant for t in tickets} == {"default"}
    for t in tickets:
        named = re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+\w", t.text)
        invoices = re.findall(r"\bINV-\d+\b", t.text)
        if named:
            assert t.customer == named[0]
        elif invoices:
            assert t.customer == owners[invoices[0]]
        assert t.customer in EMAILS


# --- The authority helpers ---------------------------------------------------------------------


def _where(stmt: Any) -> str:
    from sqlalchemy.dialects import postgresql

    return str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def test_owned_scopes_every_owned_entity_to_the_tenant_and_customer() -> None:
    from sqlalchemy import select

    from specialists.billing.models import Account, Invoice
    from specialists.technical.models import KbArticle

    ctx = ToolContext(request_id="r", tenant="acme", step="draft", customer="ann@example.com")
    sql = _where(owned(select(Invoice, Account).join(Account, Account.id == Invoice.account_id), ctx))
    assert "invoices.tenant = 'acme' AND invoices.customer = 'ann@example.com'" in sql
    assert "accounts.tenant = 'acme' AND accounts.customer = 'ann@example.com'" in sql
    assert "kb_articles.tenant = 'acme'" in _where(in_tenant(select(KbArticle), ctx))


def test_owned_refuses_without_a_customer_and_without_an_owned_table() -> None:
    from sqlalchemy import select

    from app.state.models import Request
    from specialists.billing.models import Invoice

    anonymous = ToolContext(request_id="r", tenant="acme", step="draft")
    with pytest.raises(ToolError, match="no verified customer"):
        owned(select(Invoice), anonymous)
    with pytest.raises(TypeError, match="nothing to scope"):
        owned(select(Request), ToolContext(request_id="r", tenant="acme", step="draft", customer="ann"))


def test_a_tool_error_goes_back_to_the_model_as_the_result() -> None:
    from pydantic import BaseModel

    class NoArgs(BaseModel):
        pass

    def needs_customer(ctx: ToolContext, args: NoArgs) -> dict[str, Any]:
        return {"customer": ctx.require_customer()}

    tool = Tool(name="whoami", description="d", args=NoArgs, run=needs_customer)
    refused = tool.invoke(CTX, "{}")
    assert set(refused) == {"error"} and "no verified customer" in refused["error"]
    signed_in = ToolContext(request_id=CTX.request_id, tenant="acme", step="agent", customer="ann")
    assert tool.invoke(signed_in, "{}") == {"customer": "ann"}
