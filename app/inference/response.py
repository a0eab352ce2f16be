"""A provider's answer in the engine's own shape, whatever API produced it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatResponse(BaseModel):
    model: str
    content: str | None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage
    # In OpenAI's words (stop, length, tool_calls, content_filter) for every adapter.
    finish_reason: str | None = None
    # Rate-limit headers as the provider sent them, for adaptive limiting.
    rate_headers: dict[str, str] = Field(default_factory=dict)

    def assistant_message(self) -> dict[str, Any]:
        """The message to append to the conversation when the agent loop continues."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message
