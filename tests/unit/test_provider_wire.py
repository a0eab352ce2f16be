"""What goes over the wire: the transport sends each adapter's request as built (and Azure's as
the official `openai` SDK's AzureOpenAI client sends it), redacts an echoed key, and treats a 200
that is not the API's answer as the server's failure."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest

from app.config import reset_settings
from app.inference import provider
from app.inference.adapters import ChatRequest, adapter_for
from app.inference.errors import FailureClass, ProviderError

COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


@dataclass
class Capture:
    """A local HTTP server that records each request and answers with `status` and `body`."""

    status: int = 200
    body: bytes = json.dumps(COMPLETION).encode()
    headers: dict[str, str] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def capture() -> Iterator[tuple[Capture, str]]:
    state = Capture()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.seen.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(self.rfile.read(length) or b"{}"),
                }
            )
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def azure_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SWITCHBOARD_AZURE_DEPLOYMENTS", "gpt-4o-mini=support-4o")
    monkeypatch.setenv("SWITCHBOARD_AZURE_API_VERSION", "2024-10-21")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


MESSAGES = [{"role": "user", "content": "hello"}]


def _send(kind: str, base: str, key: str = "secret-key") -> provider.ChatResponse:
    return provider.chat(
        adapter_for(kind),
        base_url=base,
        request=ChatRequest("gpt-4o-mini", MESSAGES, max_tokens=9),
        api_key=key,
        key_id="key-1",
    )


def test_azure_request_is_the_one_the_official_sdk_sends(capture: tuple[Capture, str]) -> None:
    state, base = capture
    sdk = openai.AzureOpenAI(
        azure_endpoint=base, api_key="secret-key", api_version="2024-10-21", max_retries=0
    )
    sdk.chat.completions.create(model="support-4o", messages=MESSAGES, max_tokens=9)  # type: ignore[arg-type]
    answer = _send("azure", base)
    theirs, ours = state.seen
    assert (
        ours["path"]
        == theirs["path"]
        == "/openai/deployments/support-4o/chat/completions?api-version=2024-10-21"
    )
    assert ours["headers"]["api-key"] == theirs["headers"]["api-key"] == "secret-key"
    assert "authorization" not in ours["headers"] and "authorization" not in theirs["headers"]
    assert ours["body"]["messages"] == theirs["body"]["messages"] and ours["body"]["max_tokens"] == 9
    assert answer.content == "hi" and answer.usage.prompt_tokens == 3


def test_openai_request_is_the_one_the_official_sdk_sends(capture: tuple[Capture, str]) -> None:
    state, base = capture
    sdk = openai.OpenAI(base_url=f"{base}/v1", api_key="secret-key", max_retries=0)
    sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=9)  # type: ignore[arg-type]
    _send("openai", f"{base}/v1")
    theirs, ours = state.seen
    assert ours["path"] == theirs["path"] == "/v1/chat/completions"
    assert ours["headers"]["authorization"] == theirs["headers"]["authorization"] == "Bearer secret-key"
    assert ours["body"] == theirs["body"]


def test_an_echoed_key_is_redacted_from_the_error(capture: tuple[Capture, str]) -> None:
    state, base = capture
    state.status, state.body = (
        401,
        json.dumps(
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key: secret-key"},
            }
        ).encode(),
    )
    with pytest.raises(ProviderError) as failed:
        _send("anthropic", base)
    assert failed.value.kind is FailureClass.AUTH and failed.value.status == 401
    assert "secret-key" not in str(failed.value) and "[redacted]" in str(failed.value)
    assert state.seen[0]["path"] == "/v1/messages" and state.seen[0]["headers"]["x-api-key"] == "secret-key"


def test_a_200_that_is_not_the_apis_answer_is_a_server_failure(capture: tuple[Capture, str]) -> None:
    state, base = capture
    state.body = b'{"unexpected": true}'
    with pytest.raises(ProviderError) as failed:
        _send("openai", f"{base}/v1")
    assert failed.value.kind is FailureClass.SERVER and failed.value.retryable


def test_anthropic_429_carries_retry_after_and_its_rate_limit_headers(capture: tuple[Capture, str]) -> None:
    state, base = capture
    state.status = 429
    state.body = json.dumps(
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests exceeded"}}
    ).encode()
    state.headers = {"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0"}
    with pytest.raises(ProviderError) as failed:
        _send("anthropic", base)
    assert failed.value.kind is FailureClass.RATE_LIMITED and failed.value.retry_after_s == 7
    state.status, state.body = (
        200,
        json.dumps(
            {
                "model": "claude-haiku-4-5",
                "stop_reason": "end_turn",
                "content": [{"type": "text", "text": "hi"}],
                "usage": {"input_tokens": 4, "output_tokens": 1},
            }
        ).encode(),
    )
    state.headers = {
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2030-01-01T00:00:00Z",
        "x-request-id": "r",
    }
    answer = _send("anthropic", base)
    # For the limiter (headers.exhausted_for): the provider's rate-limit headers, nothing else.
    assert answer.rate_headers == {
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2030-01-01T00:00:00Z",
    }
    assert (answer.content, answer.usage.prompt_tokens, answer.usage.completion_tokens) == ("hi", 4, 1)
