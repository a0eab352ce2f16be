"""Azure OpenAI's path layout in front of an OpenAI-compatible server (fakellm speaks OpenAI's and
Anthropic's layouts, not Azure's): it checks what Azure would check (deployment path, api-version,
`api-key` header, no bearer token), records it, and forwards the body to `/v1/chat/completions`."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")


@dataclass
class Seen:
    deployment: str
    api_version: str | None
    api_key: str | None
    authorization: str | None
    body: dict[str, Any]


@dataclass
class AzureShim:
    upstream: str  # the OpenAI-compatible server's root, e.g. http://127.0.0.1:9999
    api_version: str
    port: int
    seen: list[Seen] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    async def _chat(self, request: Request) -> Response:
        match = _PATH.match(request.url.path)
        if match is None:
            return JSONResponse({"error": {"code": "404", "message": "Resource not found"}}, status_code=404)
        body = await request.json()
        self.seen.append(Seen(match.group(1), request.query_params.get("api-version"),
                              request.headers.get("api-key"), request.headers.get("authorization"), body))
        if request.query_params.get("api-version") != self.api_version:
            return JSONResponse({"error": {"code": "404", "message": "Resource not found"}}, status_code=404)
        if not request.headers.get("api-key") or request.headers.get("authorization"):
            message = "Access denied due to invalid subscription key or wrong API endpoint."
            return JSONResponse({"error": {"code": "401", "message": message}}, status_code=401)
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
            answer = await client.post("/v1/chat/completions", json=body)
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")

    def __enter__(self) -> Self:
        app = Starlette(routes=[Route("/{path:path}", self._chat, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="azure-shim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("the Azure shim did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
