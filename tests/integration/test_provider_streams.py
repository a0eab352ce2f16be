"""Streamed answers from a server nobody here wrote: fakellm's OpenAI and Anthropic APIs (and
Azure's path layout in front of its OpenAI API) streamed through each adapter: the text in
pieces, tool-call arguments assembled from their deltas, the same answer as without streaming."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import pytest

from app.inference import provider
from app.inference.adapters import ChatRequest, adapter_for
from app.ops.supervisor import Supervisor
from tests import conftest as root
from tests.integration.test_provider_adapters import AZURE_API_VERSION, REPLY, _serve_fakellm
from tests.support.azure_shim import AzureShim

RULES = {"rules": [
    {"name": "call_tool", "when": {"messages_contain": "look it up"},
     "respond": {"tool_calls": [{"name": "check_refund_eligibility",
                                 "arguments": {"invoice_id": "INV-1042", "reason": "duplicate charge"}}]}},
    {"name": "answer", "when": {"messages_contain": "refund"}, "respond": {"content": REPLY}},
]}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "azure": "gpt-4o-mini"}


@pytest.mark.parametrize("kind", ["openai", "anthropic", "azure"])
def test_fakellm_streams_through_each_adapter(kind: str, services: object, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import reset_settings

    monkeypatch.setenv("SWITCHBOARD_AZURE_API_VERSION", AZURE_API_VERSION)
    # Every chunk as it comes (no gathering between reads): the decoding is what is under test.
    monkeypatch.setenv("SWITCHBOARD_STREAM_READ_INTERVAL_S", "0")
    reset_settings()
    with Supervisor(tmp_path, restart=False) as sup:
        fakellm = _serve_fakellm(sup, RULES, tmp_path)
        shim = AzureShim(fakellm, AZURE_API_VERSION, root._free_port()) if kind == "azure" else None
        with shim or contextlib.nullcontext():
            bases = {"openai": f"{fakellm}/v1", "anthropic": fakellm, "azure": shim.base_url if shim else ""}
            base = bases[kind]

            def call(text: str, got: list[str] | None) -> provider.ChatResponse:
                return provider.chat(adapter_for(kind), base_url=base, api_key="k", key_id="key-1",
                                     on_delta=got.append if got is not None else None,
                                     request=ChatRequest(MODELS[kind], [{"role": "user", "content": text}],
                                                         tools=[{"type": "function", "function": {
                                                             "name": "check_refund_eligibility",
                                                             "parameters": {"type": "object"}}}]))

            got: list[str] = []
            streamed = call("Where is my refund?", got)
            plain = call("Where is my refund?", None)
            tool_deltas: list[str] = []
            tool = call("Please look it up: INV-1042", tool_deltas)
        stats = httpx.get(f"{fakellm}/_fakellm/stats", timeout=5).json()
    # The Azure shim passes fakellm's body on whole, so its pieces arrive in one read.
    assert len(got) > (0 if kind == "azure" else 3)
    assert "".join(got) == streamed.content == plain.content == REPLY
    assert streamed.finish_reason == "stop"
    assert tool_deltas == [] and tool.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in tool.tool_calls] == [
        ("check_refund_eligibility", {"invoice_id": "INV-1042", "reason": "duplicate charge"})]
    assert [r["stream"] for r in stats["recent"]].count(True) == 2
    reset_settings()
