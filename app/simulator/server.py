"""The simulated provider's HTTP layer: `/v1/chat/completions` (whole or streamed), `/v1/models`, OpenAI's
error bodies, and the `/admin/*` endpoints tests and benchmarks drive."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.extras import unavailable

try:  # the `demo` extra: only the demo, the tests and benchmarks run the simulated provider
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route
except ModuleNotFoundError as exc:
    raise unavailable("demo", "the simulated provider (app.simulator)", exc) from exc

from app.simulator import stream as simulator_stream
from app.simulator.config import FaultUpdate, PromptRecording, SimulatorConfig
from app.simulator.markers import (
    BAD_REQUEST_MARKER,
    CONTEXT_LENGTH_MARKER,
    CUT_STREAM_MARKER,
    FAIL_MARKER,
    SLOW_MARKER,
)
from app.simulator.ratelimit import RateDecision
from app.simulator.replies import Reply, build_reply, completion_tokens, prompt_tokens
from app.simulator.state import MAX_RECORDED_PROMPTS, Simulator
from app.simulator.stats import AcceptedWindow
from app.simulator.text import format_reset_duration, key_fingerprint, message_text, stable_hash
from app.simulator.wire import ChatCompletionRequest


def _error(
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


_SERVER_ERRORS = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
}


def _server_error(status: int, headers: dict[str, str]) -> JSONResponse:
    return _error(status, _SERVER_ERRORS.get(status, "Server error."), "server_error", headers=headers)


def _bearer_key(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _unauthorized(key: str) -> JSONResponse:
    # Never echo the key back: error bodies end up in client logs.
    message = "Incorrect API key provided." if key else "You didn't provide an API key."
    return _error(401, message, "invalid_request_error", "invalid_api_key")


def _validation_error(exc: ValidationError) -> JSONResponse:
    first = exc.errors()[0]
    param = ".".join(str(part) for part in first.get("loc", ()))
    message = f"Invalid value for '{param}': {first.get('msg')}"
    return _error(400, message, "invalid_request_error", param=param or None)


def _rate_limited(decision: RateDecision, model: str) -> JSONResponse:
    kind = decision.limit_type or "requests"
    unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    wait = decision.retry_after_s
    scope = "your key across models" if decision.level == "account" else model
    message = (
        f"Rate limit reached for {scope} on {unit}: Limit {decision.limit}, "
        f"Used {decision.used}. Please try again in {format_reset_duration(wait)}."
    )
    headers = decision.snapshot.headers()
    headers["retry-after"] = str(max(1, math.ceil(wait)))
    headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
    body = {"error": {"message": message, "type": kind, "param": None, "code": "rate_limit_exceeded"}}
    return JSONResponse(body, status_code=429, headers=headers)


def _completion_body(
    body: ChatCompletionRequest, reply: Reply, prompt: int, completion: int
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": "fp_switchboard_sim",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep; return True if the client went away first.

    A client that timed out should not keep counting as in flight for the
    rest of a 120 s simulated hang.
    """
    if seconds <= 0:
        return False
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also on cancellation (server shutdown), so no task outlives the request.
        sleeper.cancel()
        watcher.cancel()
    return watcher in done and sleeper not in done


async def _parse_body(request: Request) -> ChatCompletionRequest | JSONResponse:
    try:
        payload = await request.json()
    except ValueError:
        return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
    try:
        body = ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        return _validation_error(exc)
    if body.stream_options is not None and not body.stream:
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        return _error(400, message, "invalid_request_error", None, "stream_options")
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_schema" and not (fmt.json_schema or {}).get("name"):
        message = "Missing required parameter: 'response_format.json_schema.name'."
        return _error(400, message, "invalid_request_error", "missing_required_parameter", "response_format")
    if (
        fmt is not None
        and fmt.type == "json_object"
        and not any("json" in message_text(m).lower() for m in body.messages)
    ):
        # OpenAI's own rule for JSON mode, so a prompt that would fail there fails here first.
        message = (
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
            "'json_object'."
        )
        return _error(400, message, "invalid_request_error", None, "messages")
    return body


async def _complete(request: Request, sim: Simulator) -> Response:
    key = _bearer_key(request)
    if not sim.key_allowed(key):
        return _unauthorized(key)
    key_id = key_fingerprint(key)
    sim.stats.by_key[key_id] += 1
    parsed = await _parse_body(request)
    if isinstance(parsed, JSONResponse):
        return parsed
    body = parsed
    sim.record(body)
    sim.stats.by_model[body.model] += 1
    levels = sim.settings.levels(key_id, body.model)
    now = sim.clock()
    headers = sim.limiter.snapshot_levels(levels, now).headers()

    user_text = "\n".join(message_text(m) for m in body.messages if m.role == "user")
    # Markers and outages act before the limiter, like a gateway failing
    # before quota is charged, so poison requests fail the same way every time.
    if BAD_REQUEST_MARKER in user_text:
        sim.stats.faults["bad_request_marker"] += 1
        message = "The simulator was told to reject this request."
        return _error(400, message, "invalid_request_error", headers=headers)
    if CONTEXT_LENGTH_MARKER in user_text:  # test aid, see CONTEXT_LENGTH_MARKER
        sim.stats.faults["context_length_marker"] += 1
        message = (
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            f"{prompt_tokens(body) + 8192} tokens. Please reduce the length of the messages."
        )
        return _error(400, message, "invalid_request_error", "context_length_exceeded", "messages", headers)
    if FAIL_MARKER in user_text:
        sim.stats.faults["fail_marker"] += 1
        return _server_error(500, headers)
    if sim.outage_until > now:
        sim.stats.faults["outage"] += 1
        return _server_error(503, headers)

    reply = build_reply(body)
    prompt, completion = prompt_tokens(body), completion_tokens(reply)
    decision = sim.limiter.acquire_levels(levels, prompt + completion, now)
    if not decision.allowed:
        sim.stats.rate_limited_by_type[decision.limit_type or "requests"] += 1
        sim.stats.rate_limited_by_level[decision.level or "model"] += 1
        return _rate_limited(decision, body.model)

    fault = sim.draw_fault(slow=SLOW_MARKER in user_text)
    if fault.timeout:
        sim.stats.faults["timeout"] += 1
    if body.stream and fault.error_status is None and not fault.timeout:
        return _streamed(sim, body, reply, prompt, completion, fault.delay_s, user_text, now, headers)
    if await _sleep_unless_disconnected(request, fault.delay_s):
        sim.stats.client_disconnects += 1
        return Response(status_code=499)  # nginx's "client closed request"; never sent
    headers = sim.limiter.snapshot_levels(levels, sim.clock()).headers()
    if fault.error_status is not None:
        sim.stats.faults["error"] += 1
        return _server_error(fault.error_status, headers)

    sim.stats.accepted.add(now)
    sim.stats.accepted_by_model.setdefault(body.model, AcceptedWindow()).add(now)
    sim.stats.prompt_tokens += prompt
    sim.stats.completion_tokens += completion
    headers["x-request-id"] = f"req_{uuid.uuid4().hex[:24]}"
    return JSONResponse(_completion_body(body, reply, prompt, completion), headers=headers)


def _streamed(
    sim: Simulator,
    body: ChatCompletionRequest,
    reply: Reply,
    prompt: int,
    completion: int,
    delay_s: float,
    user_text: str,
    now: float,
    headers: dict[str, str],
) -> Response:
    """The answer as OpenAI's SSE chunks, the latency spread over them (app/simulator/stream.py)."""
    cut = False
    if CUT_STREAM_MARKER in user_text:
        said = (json.dumps(m.model_dump(mode="json"), sort_keys=True) for m in body.messages)
        conversation = stable_hash(*said)
        cut = conversation not in sim.cut_streams
        sim.cut_streams.add(conversation)
    if cut:
        sim.stats.faults["cut_stream"] += 1
    else:
        sim.stats.accepted.add(now)
        sim.stats.prompt_tokens += prompt
        sim.stats.completion_tokens += completion
    usage = (
        {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if (body.stream_options or {}).get("include_usage")
        else None
    )
    headers = {**headers, "x-request-id": f"req_{uuid.uuid4().hex[:24]}", "cache-control": "no-cache"}
    return StreamingResponse(
        simulator_stream.chunks(
            body.model, reply.content, reply.tool_calls, reply.finish_reason, usage, delay_s, cut=cut
        ),
        media_type="text/event-stream",
        headers=headers,
    )


async def chat_completions(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    sim.stats.enter()
    status = 500
    try:
        response = await _complete(request, sim)
        status = response.status_code
        return response
    finally:
        sim.stats.leave(status)


async def list_models(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    key = _bearer_key(request)
    if not sim.key_allowed(key):
        return _unauthorized(key)
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": "switchboard-sim"}
        for model in sim.config.models
    ]
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def admin_stats(request: Request) -> Response:
    return JSONResponse(request.app.state.simulator.stats.as_dict())


async def admin_reset(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    sim.reset()
    return JSONResponse(sim.stats.as_dict())


AdminT = TypeVar("AdminT", bound=BaseModel)


async def _admin_body(request: Request, model: type[AdminT]) -> AdminT | JSONResponse:
    try:
        payload = await request.json()
    except ValueError:
        return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        return _validation_error(exc)


async def admin_faults(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    if request.method == "POST":
        update = await _admin_body(request, FaultUpdate)
        if isinstance(update, JSONResponse):
            return update
        sim.apply_faults(update)
    return JSONResponse(sim.fault_view())


async def admin_prompts(request: Request) -> Response:
    """GET: the prompts recorded so far. POST {"record": bool}: start recording afresh, or stop."""
    sim: Simulator = request.app.state.simulator
    if request.method == "POST":
        recording = await _admin_body(request, PromptRecording)
        if isinstance(recording, JSONResponse):
            return recording
        sim.prompts = deque(maxlen=MAX_RECORDED_PROMPTS) if recording.record else None
    prompts = list(sim.prompts) if sim.prompts is not None else []
    return JSONResponse({"recording": sim.prompts is not None, "prompts": prompts})


def create_app(config: SimulatorConfig, *, clock: Callable[[], float] = time.monotonic) -> Starlette:
    """Build the ASGI app; ``clock`` is injectable so tests can move time."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/admin/stats", admin_stats, methods=["GET"]),
            Route("/admin/reset", admin_reset, methods=["POST"]),
            Route("/admin/faults", admin_faults, methods=["GET", "POST"]),
            Route("/admin/prompts", admin_prompts, methods=["GET", "POST"]),
        ]
    )
    app.state.simulator = Simulator(config, clock)
    return app
