"""SWITCHBOARD_STREAM_REPLIES=when_read on real workers: a reply nobody is reading is asked of the
provider without streaming, one with a reader bound streams to it, and both end the same way."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import reset_settings
from app.ingress import client
from tests.integration.conftest import own_pools


@pytest.fixture
def when_read_pools(private_broker: str, simulator: str, provider_latency: Callable[[int], None],
                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    monkeypatch.setenv("SWITCHBOARD_STREAM_REPLIES", "when_read")
    reset_settings()
    provider_latency(1000)  # the reader is bound long before the draft's last turn begins
    with httpx.Client(base_url=simulator, timeout=10) as admin:
        admin.post("/admin/prompts", json={"record": True}).raise_for_status()
        try:
            with own_pools(tmp_path, ["router", "technical"]):
                yield admin
        finally:
            admin.post("/admin/prompts", json={"record": False})
            reset_settings()


def _streamed_flags(admin: httpx.Client, marker: str) -> list[bool]:
    """Whether each provider call of the request whose text carries `marker` asked to stream."""
    recorded: list[dict[str, Any]] = admin.get("/admin/prompts").json()["prompts"]
    return [p["stream"] for p in recorded if any(marker in (m["content"] or "") for m in p["messages"])]


def test_only_a_reply_someone_reads_is_streamed(when_read_pools: httpx.Client) -> None:
    unread_marker, read_marker = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    unread = client.submit(f"The export page crashes with error 500 when I open it (ref {unread_marker})")
    view = client.wait(unread.id, timeout=120)
    assert view.status == "succeeded", view.error
    unread_flags = _streamed_flags(when_read_pools, unread_marker)
    assert unread_flags and not any(unread_flags), unread_flags

    read = client.submit(f"The export page crashes with error 500 when I open it (ref {read_marker})")
    events = list(client.stream(read.id, timeout=120))
    kinds = [e.event for e in events]
    assert kinds[-1] == "done" and "delta" in kinds and kinds.index("delta") < kinds.index("done"), kinds
    assert events[-1].data["result"] == client.get(read.id).result
    assert any(_streamed_flags(when_read_pools, read_marker))
