"""What real calls need, through `gateway.complete()` and a workflow step against the simulated
provider process, with the run's PostgreSQL as the record: per-call parameters (JSON mode),
structured output validated into a pydantic model with one repair, and models with no price
recorded as unpriced (NULL), never as $0, and listed by the report."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.inference.gateway import complete
from app.simulator import BAD_JSON_MARKER
from app.state import LlmCall, Request, StepRun, session_scope
from tests.integration.test_gateway import PRICE_IN, PRICE_OUT, Gateway, Sim, gw, main_sim, new_request, rows

pytestmark = pytest.mark.usefixtures("services")
__all__ = ["gw", "main_sim"]  # fixtures shared with test_gateway


class Triage(BaseModel):
    summary: str
    invoice_id: str


class StrictInvoice(BaseModel):
    invoice_id: str = Field(pattern=r"^INV-\d+$")


def _calls(request_id: str) -> list[LlmCall]:
    with session_scope() as session:
        return list(
            session.scalars(select(LlmCall).where(LlmCall.request_id == request_id).order_by(LlmCall.id))
        )


def test_json_mode_reaches_the_provider_and_is_cached_apart(gw: Gateway, main_sim: Sim) -> None:
    messages = [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "Is INV-7 paid?"},
    ]
    plain = complete(messages, tier="cheap", purpose="json-plain", cache=True, temperature=0.0)
    as_json = complete(
        messages,
        tier="cheap",
        purpose="json-mode",
        cache=True,
        temperature=0.0,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(as_json.content or ""), dict)
    with pytest.raises(ValueError):
        json.loads(plain.content or "")
    # Both went to the provider: a JSON-mode answer is not the cached answer to the same messages.
    assert [r.cache_hit for r in rows("json-plain") + rows("json-mode")] == [False, False]


def _run_step(request_id: str, text: str, model: type[BaseModel]) -> Any:
    from app.orchestration.registry import get_specialist
    from workflows.engine import RequestInfo, Workflow, run

    workflow = Workflow("structured")

    @workflow.step(retries=0)
    def triage(ctx: Any) -> dict[str, Any]:
        answer = ctx.llm([{"role": "user", "content": text}], max_tokens=200, response_model=model)
        return answer.model_dump()

    return run(
        workflow, RequestInfo(request_id, "gw-test", text, "normal", []), get_specialist("technical"), {}
    )


def test_a_step_gets_a_validated_model_after_one_repair(gw: Gateway, main_sim: Sim) -> None:
    text = f"I was charged twice on INV-1042 {BAD_JSON_MARKER}"
    request_id = new_request(text)
    outputs = _run_step(request_id, text, Triage)
    assert outputs["triage"]["invoice_id"] == "INV-1042" and outputs["triage"]["summary"]
    calls = _calls(request_id)
    # The broken answer and the repaired one: both paid, both in the record.
    assert [(c.step, c.outcome) for c in calls] == [("triage", "ok"), ("triage", "ok")]


def test_a_step_whose_answer_stays_invalid_fails_for_good(gw: Gateway, main_sim: Sim) -> None:
    from workflows.engine import StepError

    text = "No invoice number in this ticket at all"
    request_id = new_request(text)
    with pytest.raises(StepError) as failed:
        _run_step(request_id, text, StrictInvoice)
    assert not failed.value.transient
    assert "not a valid StrictInvoice after one repair" in str(failed.value)
    with session_scope() as session:
        step = session.scalars(select(StepRun).where(StepRun.request_id == request_id)).one()
    assert step.status == "failed" and len(_calls(request_id)) == 2


def test_a_model_with_no_price_is_recorded_unpriced_not_free(
    gw: Gateway, main_sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    from app.inference.cost import warn_unpriced
    from app.observability.report import build, render_text

    since = datetime.now(UTC)
    gw.set(prices=f"{gw.other}={PRICE_IN}/{PRICE_OUT}", capable_model=gw.other)
    with caplog.at_level(logging.WARNING, logger="app.inference.cost"):
        assert warn_unpriced() == [gw.model]
    assert f"model '{gw.model}' has no price in SWITCHBOARD_PRICES" in caplog.text

    request_id = new_request("one unpriced call, one priced")
    messages = [{"role": "user", "content": "Where can I download my invoice?"}]
    complete(messages, tier="cheap", purpose="unpriced", request_id=request_id)
    complete(messages, tier="capable", purpose="priced", request_id=request_id)

    unpriced, priced = _calls(request_id)
    assert (unpriced.model, unpriced.cost_usd) == (gw.model, None) and unpriced.prompt_tokens > 0
    assert priced.model == gw.other and priced.cost_usd is not None and priced.cost_usd > 0
    with session_scope() as session:
        totals = session.get(Request, request_id)
    assert totals is not None
    # Tokens of both calls; cost of the priced one only: the unknown cost is not counted as $0.
    assert totals.prompt_tokens == unpriced.prompt_tokens + priced.prompt_tokens
    assert totals.cost_usd == priced.cost_usd > Decimal(0)

    report = build(since)
    assert report.unpriced_calls >= 1 and gw.model in report.unpriced_models
    assert gw.other not in report.unpriced_models
    unpriced_line = next(line for line in render_text(report).splitlines() if "unpriced:" in line)
    assert gw.model in unpriced_line and "no price in SWITCHBOARD_PRICES" in unpriced_line
