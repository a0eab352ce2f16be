"""People-in-the-loop parts without services: the approval contract on tools, billing's limit
setting, the rule that hands a ticket to a person, and the tool the model may call for one."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.orchestration.registry import specialists
from app.orchestration.specialist import Specialist, TenantSettingDef, ToolContext
from app.simulator import ChatCompletionRequest, build_reply
from specialists.billing.arguments import IssueRefundArgs
from specialists.billing.policy import REFUND_APPROVAL_LIMIT
from workflows.support_ticket import HANDOFF_TOOL, WANTS_A_PERSON


def test_only_the_refund_tool_needs_approval_and_bad_arguments_never_reach_it() -> None:
    billing = specialists()["billing"]
    assert {t.name for t in billing.tools if t.approval is not None} == {"issue_refund"}
    refund = billing.tool("issue_refund")
    assert refund is not None
    assert refund.parse('{"invoice_id": "inv-1042", "reason": "cancelled"}') == IssueRefundArgs(
        invoice_id="INV-1042", reason="cancelled"
    )
    assert "error" in refund.parse('{"invoice_id": "1042"}')  # type: ignore[operator]
    lookup = billing.tool("get_account")
    assert lookup is not None
    assert lookup.needs_approval(ToolContext("r", "t", "draft"), lookup.args(email="a@example.com")) is None


@pytest.mark.parametrize("value", ["-1", "abc", "NaN", "Infinity", None])
def test_the_refund_limit_refuses_what_is_not_an_amount(value: object) -> None:
    with pytest.raises((ValueError, ArithmeticError, TypeError)):
        REFUND_APPROVAL_LIMIT.parse(value)


def test_the_refund_limit_defaults_to_500_and_takes_numbers_or_strings() -> None:
    assert REFUND_APPROVAL_LIMIT.parse(REFUND_APPROVAL_LIMIT.default) == Decimal(500)
    assert REFUND_APPROVAL_LIMIT.parse(1200) == REFUND_APPROVAL_LIMIT.parse("1200.00") == Decimal(1200)


def test_a_specialist_setting_must_carry_its_name() -> None:
    billing = specialists()["billing"]
    with pytest.raises(ValueError, match="must start with 'other.'"):
        Specialist(
            name="other",
            description="d",
            system_prompt="p",
            routing_examples=billing.routing_examples,
            tenant_settings=(TenantSettingDef("billing.x", "stolen", 1),),
        )


@pytest.mark.parametrize(
    "text",
    [
        "I want to talk to a human",
        "Can I speak with a real person please?",
        "let me chat to an agent",
        "Is there a live person there?",
        "put me through to a human being",
    ],
)
def test_asking_for_a_person_is_recognised(text: str) -> None:
    assert WANTS_A_PERSON.search(text)


@pytest.mark.parametrize(
    "text",
    [
        "The agent install fails on Ubuntu",
        "our human resources team needs invoices",
        "personal plan pricing",
        "I was charged twice for INV-1042",
        "Can someone explain this charge?",
    ],
)
def test_other_tickets_are_not_handed_over(text: str) -> None:
    assert not WANTS_A_PERSON.search(text)


def test_the_handoff_tool_is_not_reached_for_on_ordinary_tickets() -> None:
    """The simulator picks tools by the words they share with the ticket, so the handoff tool's
    words must not pull it into ordinary tickets of the routing examples."""
    for spec in specialists().values():
        tools = [t.schema() for t in spec.tools] + [HANDOFF_TOOL.schema()]
        for text in spec.routing_examples:
            body = ChatCompletionRequest.model_validate(
                {"model": "sim-large", "messages": [{"role": "user", "content": text}], "tools": tools}
            )
            called = {c["function"]["name"] for c in build_reply(body).tool_calls}
            assert HANDOFF_TOOL.name not in called, text
