"""Azure OpenAI: the chat-completions body and answer, sent to a deployment
(`{base}/openai/deployments/{deployment}/chat/completions?api-version=...`) with an `api-key`
header. The deployment is named per model (SWITCHBOARD_AZURE_DEPLOYMENTS, else the model's name)."""

from __future__ import annotations

from urllib.parse import quote

from app.config import get_settings
from app.inference.adapters.base import JSON_HEADERS, ChatRequest, HttpCall
from app.inference.adapters.openai_chat import OpenAIChat, chat_body


def deployment_path(base_url: str, model: str) -> str:
    settings = get_settings()
    deployment = quote(settings.azure_deployments.get(model, model), safe="")
    # The SDK's azure_endpoint is the resource's root; a base already ending in /openai works too.
    prefix = "" if base_url.rstrip("/").endswith("/openai") else "openai/"
    version = quote(settings.azure_api_version, safe="")
    return f"{prefix}deployments/{deployment}/chat/completions?api-version={version}"


class AzureOpenAI(OpenAIChat):
    """OpenAI's body, answer and error bodies (its content filter says "content management
    policy", which the shared classification knows); only where it goes and how the key travels
    differ."""

    kind = "azure"

    def build(self, request: ChatRequest, base_url: str, api_key: str) -> HttpCall:
        headers = [(b"api-key", api_key.encode()), *JSON_HEADERS]  # and no Authorization header
        return HttpCall(deployment_path(base_url, request.model), headers, chat_body(request))
