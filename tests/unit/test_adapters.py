"""The provider adapters: the exact request each builds from the engine's neutral call, how each
reads its API's answer, and how each classifies its API's errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from app.config import reset_settings
from app.inference.adapters import ChatRequest, adapter_for
from app.inference.adapters.anthropic_messages import STRUCTURED_TOOL, convert_messages
from app.inference.errors import FailureClass

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "check_refund_eligibility",
            "description": "Check an invoice.",
            "parameters": {
                "type": "object",
                "properties": {"invoice_id": {"type": "string"}},
                "required": ["invoice_id"],
            },
        },
    }
]
# A support conversation as the workflows write it (OpenAI's shape): two system messages, the
# ticket, the model's tool call, the tool's result.
CONVERSATION = [
    {"role": "system", "content": "You are billing support."},
    {"role": "system", "content": "Ticket summary: a duplicate charge."},
    {"role": "user", "content": "Refund INV-1042 please"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "check_refund_eligibility", "arguments": '{"invoice_id": "INV-1042"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"eligible": true}'},
]


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    reset_settings()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def _headers(call_headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode().lower(): v.decode() for k, v in call_headers}


def test_openai_request_is_the_call_with_a_bearer_key() -> None:
    call = adapter_for("openai").build(
        ChatRequest(
            "gpt-4o-mini",
            CONVERSATION,
            TOOLS,
            300,
            temperature=0.2,
            tool_choice="required",
            response_format={"type": "json_object"},
        ),
        "https://api.openai.com/v1",
        "sk-secret",
    )
    assert call.path == "chat/completions"
    assert _headers(call.headers)["authorization"] == "Bearer sk-secret"
    assert call.body == {
        "model": "gpt-4o-mini",
        "messages": CONVERSATION,
        "max_tokens": 300,
        "tools": TOOLS,
        "tool_choice": "required",
        "temperature": 0.2,
        "response_format": {"type": "json_object"},
    }


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-4o-mini", "max_tokens"),
        ("gpt-4.1", "max_tokens"),
        ("llama3.1:8b", "max_tokens"),
        ("o1", "max_completion_tokens"),
        ("o3-mini", "max_completion_tokens"),
        ("o4-mini", "max_completion_tokens"),
        ("gpt-5", "max_completion_tokens"),
        ("gpt-5-mini", "max_completion_tokens"),
    ],
)
def test_token_limit_name_per_model(model: str, name: str) -> None:
    body = adapter_for("openai").build(ChatRequest(model, CONVERSATION[:3]), "http://x/v1", "k").body
    assert body[name] == 512
    assert ("max_tokens" in body) != ("max_completion_tokens" in body)


def test_token_limit_patterns_are_a_setting(fresh_settings: pytest.MonkeyPatch) -> None:
    fresh_settings.setenv("SWITCHBOARD_MAX_COMPLETION_TOKENS_MODELS", "my-reasoner*")
    reset_settings()
    openai = adapter_for("openai")
    assert "max_completion_tokens" in openai.build(ChatRequest("my-reasoner-2", []), "http://x/v1", "k").body
    assert "max_tokens" in openai.build(ChatRequest("gpt-5", []), "http://x/v1", "k").body


def test_tool_choice_is_not_sent_without_tools() -> None:
    body = (
        adapter_for("openai")
        .build(ChatRequest("m", CONVERSATION[:3], tool_choice="auto"), "http://x/v1", "k")
        .body
    )
    assert "tool_choice" not in body and "tools" not in body


def test_azure_request_names_the_deployment_and_api_version_with_an_api_key(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    fresh_settings.setenv("SWITCHBOARD_AZURE_DEPLOYMENTS", "gpt-5-mini=support gpt5")
    fresh_settings.setenv("SWITCHBOARD_AZURE_API_VERSION", "2025-01-01-preview")
    reset_settings()
    azure = adapter_for("azure")
    call = azure.build(
        ChatRequest("gpt-5-mini", CONVERSATION, TOOLS, 200), "https://acme.openai.azure.com", "az-key"
    )
    assert call.path == "openai/deployments/support%20gpt5/chat/completions?api-version=2025-01-01-preview"
    headers = _headers(call.headers)
    assert headers["api-key"] == "az-key"
    assert "authorization" not in headers
    assert call.body["max_completion_tokens"] == 200 and call.body["tools"] == TOOLS
    # Unmapped models are deployments of their own name; a base ending in /openai works too.
    plain = azure.build(ChatRequest("gpt-4o", []), "https://acme.openai.azure.com/openai/", "k")
    assert plain.path == "deployments/gpt-4o/chat/completions?api-version=2025-01-01-preview"


def test_openai_answer_with_tool_calls_and_usage() -> None:
    payload = {
        "model": "gpt-4o-mini-2024",
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {
                                "name": "check_refund_eligibility",
                                "arguments": '{"invoice_id": "INV-1"}',
                            },
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 17},
    }
    adapter = adapter_for("openai")
    request = ChatRequest("gpt-4o-mini", CONVERSATION[:3], TOOLS)
    answer = adapter.parse(
        request, adapter.build(request, "http://x/v1", "k"), payload, {"x-ratelimit-limit": "1"}
    )
    assert answer.model == "gpt-4o-mini-2024" and answer.finish_reason == "tool_calls"
    assert [(c.id, c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [
        ("call_9", "check_refund_eligibility", {"invoice_id": "INV-1"})
    ]
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (120, 17)
    assert answer.rate_headers == {"x-ratelimit-limit": "1"}


def test_anthropic_request_lifts_system_and_turns_tools_into_blocks() -> None:
    call = adapter_for("anthropic").build(
        ChatRequest(
            "claude-sonnet-4-5",
            CONVERSATION,
            TOOLS,
            400,
            temperature=1.5,
            tool_choice={"type": "function", "function": {"name": "check_refund_eligibility"}},
        ),
        "https://api.anthropic.com",
        "sk-ant-secret",
    )
    assert call.path == "v1/messages"
    headers = _headers(call.headers)
    assert headers["x-api-key"] == "sk-ant-secret" and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    body = call.body
    assert body["system"] == "You are billing support.\n\nTicket summary: a duplicate charge."
    assert body["max_tokens"] == 400
    assert body["temperature"] == 1.0  # OpenAI's 0-2 range clamped to Anthropic's 0-1
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Refund INV-1042 please"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "check_refund_eligibility",
                    "input": {"invoice_id": "INV-1042"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": '{"eligible": true}'}],
        },
    ]
    assert body["tools"] == [
        {
            "name": "check_refund_eligibility",
            "description": "Check an invoice.",
            "input_schema": TOOLS[0]["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "check_refund_eligibility"}


def test_anthropic_merges_consecutive_tool_results_and_text_into_one_user_turn() -> None:
    messages = [
        {"role": "user", "content": "two things"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "t", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "t", "arguments": "not json"}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "tool", "tool_call_id": "b", "content": "B"},
        {"role": "user", "content": "and?"},
    ]
    system, turns = convert_messages(messages)
    assert system == ""
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][0] == {"type": "text", "text": "Checking both."}
    assert turns[1]["content"][2]["input"] == {}  # arguments that are not JSON still make a valid block
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "a", "content": "A"},
        {"type": "tool_result", "tool_use_id": "b", "content": "B"},
        {"type": "text", "text": "and?"},
    ]


@pytest.mark.parametrize(
    ("choice", "wire"),
    [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})],
)
def test_anthropic_tool_choice(choice: str, wire: dict[str, str]) -> None:
    body = (
        adapter_for("anthropic")
        .build(
            ChatRequest("c", CONVERSATION[:3], TOOLS, tool_choice=choice), "https://api.anthropic.com", "k"
        )
        .body
    )
    assert body["tool_choice"] == wire


def test_anthropic_answer_reads_blocks_usage_and_stop_reason() -> None:
    adapter = adapter_for("anthropic")
    request = ChatRequest("claude-sonnet-4-5", CONVERSATION[:3], TOOLS)
    sent = adapter.build(request, "https://api.anthropic.com/v1", "k")
    assert sent.path == "messages"  # a base given with /v1 works too
    answer = adapter.parse(
        request,
        sent,
        {
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": "tool_use",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "check_refund_eligibility",
                    "input": {"invoice_id": "INV-1042"},
                },
            ],
            "usage": {"input_tokens": 310, "output_tokens": 42, "cache_read_input_tokens": 10},
        },
        {"anthropic-ratelimit-requests-remaining": "99"},
    )
    assert answer.content == "Let me check." and answer.finish_reason == "tool_calls"
    assert [(c.id, c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [
        ("toolu_1", "check_refund_eligibility", {"invoice_id": "INV-1042"})
    ]
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (320, 42)
    assert answer.rate_headers == {"anthropic-ratelimit-requests-remaining": "99"}
    # Its tool call goes back into the conversation in the engine's shape.
    assert answer.assistant_message()["tool_calls"][0]["function"]["name"] == "check_refund_eligibility"
    ended = adapter.parse(
        request,
        sent,
        {
            "content": [{"type": "text", "text": "x"}],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        },
        {},
    )
    assert ended.finish_reason == "length" and ended.model == "claude-sonnet-4-5"


def test_anthropic_json_schema_is_a_forced_tool_whose_input_is_the_answer() -> None:
    schema = {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}
    adapter = adapter_for("anthropic")
    request = ChatRequest(
        "c",
        CONVERSATION[:3],
        response_format={"type": "json_schema", "json_schema": {"name": "Summary", "schema": schema}},
    )
    sent = adapter.build(request, "https://api.anthropic.com", "k")
    assert (
        sent.body["tools"][0]["name"] == STRUCTURED_TOOL and sent.body["tools"][0]["input_schema"] == schema
    )
    assert sent.body["tool_choice"] == {"type": "tool", "name": STRUCTURED_TOOL}
    answer = adapter.parse(
        request,
        sent,
        {
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 5},
            "content": [
                {
                    "type": "tool_use",
                    "id": "t",
                    "name": STRUCTURED_TOOL,
                    "input": {"summary": "a duplicate charge"},
                }
            ],
        },
        {},
    )
    assert json.loads(answer.content or "") == {"summary": "a duplicate charge"}
    assert answer.tool_calls == [] and answer.finish_reason == "stop"
    # JSON mode (no schema) is an instruction in the system prompt.
    json_mode = adapter.build(
        ChatRequest("c", CONVERSATION[:3], response_format={"type": "json_object"}),
        "https://api.anthropic.com",
        "k",
    ).body
    assert "JSON" in json_mode["system"] and "tools" not in json_mode


def _anthropic_error(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (529, _anthropic_error("overloaded_error", "Overloaded"), FailureClass.SERVER),
        (529, b"<html>overloaded</html>", FailureClass.SERVER),
        (
            429,
            _anthropic_error("rate_limit_error", "Number of request tokens has exceeded your rate limit"),
            FailureClass.RATE_LIMITED,
        ),
        (
            400,
            _anthropic_error("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
            FailureClass.CONTEXT_LENGTH,
        ),
        (
            400,
            _anthropic_error("invalid_request_error", "max_tokens: Field required"),
            FailureClass.BAD_REQUEST,
        ),
        (401, _anthropic_error("authentication_error", "invalid x-api-key"), FailureClass.AUTH),
        (403, _anthropic_error("permission_error", "no access to this model"), FailureClass.AUTH),
        (500, _anthropic_error("api_error", "Internal server error"), FailureClass.SERVER),
        (404, _anthropic_error("not_found_error", "model: claude-x"), FailureClass.BAD_REQUEST),
    ],
)
def test_anthropic_errors_are_classified(status: int, body: bytes, kind: FailureClass) -> None:
    failure = adapter_for("anthropic").failure(status, body)
    assert failure.kind is kind
    assert failure.detail


@pytest.mark.parametrize(
    ("kind", "status", "body", "expected"),
    [
        (
            "openai",
            429,
            b'{"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}',
            FailureClass.RATE_LIMITED,
        ),
        (
            "openai",
            400,
            b'{"error": {"message": "maximum context length is 8192", "code": "context_length_exceeded"}}',
            FailureClass.CONTEXT_LENGTH,
        ),
        (
            "azure",
            400,
            b'{"error": {"code": "content_filter", "message": "filtered by the content management policy"}}',
            FailureClass.CONTENT_FILTER,
        ),
        ("azure", 401, b'{"error": {"code": "401", "message": "Access denied"}}', FailureClass.AUTH),
        ("openai", 502, b"Bad gateway", FailureClass.SERVER),
    ],
)
def test_openai_and_azure_errors_are_classified(
    kind: str, status: int, body: bytes, expected: FailureClass
) -> None:
    assert adapter_for(kind).failure(status, body).kind is expected


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown provider kind 'bedrock'; known: openai, anthropic, azure"):
        adapter_for("bedrock")


def test_each_provider_has_its_own_kind(fresh_settings: pytest.MonkeyPatch) -> None:
    from app.inference import targets

    fresh_settings.setenv("SWITCHBOARD_PROVIDER_KIND", "anthropic")
    fresh_settings.setenv("SWITCHBOARD_PROVIDER_BASE_URL", "https://api.anthropic.com")
    fresh_settings.setenv("SWITCHBOARD_SECONDARY_PROVIDER_KIND", "azure")
    fresh_settings.setenv("SWITCHBOARD_SECONDARY_PROVIDER_BASE_URL", "https://acme.openai.azure.com")
    fresh_settings.setenv("SWITCHBOARD_SECONDARY_PROVIDER_API_KEYS", "az-key")
    fresh_settings.setenv("SWITCHBOARD_FALLBACK_MODELS", "claude-sonnet-4-5=secondary/gpt-4o")
    reset_settings()
    targets.providers.cache_clear()
    try:
        chain = targets.chain("claude-sonnet-4-5")
        assert [(t.provider.kind, t.provider.host, t.model) for t in chain] == [
            ("anthropic", "api.anthropic.com", "claude-sonnet-4-5"),
            ("azure", "acme.openai.azure.com", "gpt-4o"),
        ]
    finally:
        targets.providers.cache_clear()
