"""Bad input gets a clear error and leaves nothing behind: no row, no event, no message."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection
from sqlalchemy import func, select

from app.orchestration.topology import declare
from app.state import Request, RequestEvent, session_scope
from tests.integration.conftest import run_cli
from tests.support.services import scratch_vhost

pytestmark = pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl for a scratch vhost")


@pytest.fixture
def quiet_broker(services: object) -> Iterator[str]:
    """A vhost with Switchboard's queues and no consumers, so published messages stay countable."""
    with scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", f"sb-quiet-{uuid.uuid4().hex[:8]}") as url:
        with Connection(url) as conn:
            declare(conn)
        yield url


def _router_depth(url: str) -> int:
    with Connection(url) as conn:
        return conn.default_channel.queue_declare(queue="router", passive=True).message_count


def _counts() -> tuple[int, int]:
    with session_scope() as session:
        return (
            session.scalar(select(func.count()).select_from(Request)) or 0,
            session.scalar(select(func.count()).select_from(RequestEvent)) or 0,
        )


BAD = [
    (["submit", ""], "text: Value error, must not be empty"),
    (["submit", "   \n\t "], "must not be empty"),
    (["submit", "x" * (32 * 1024 + 1)], "the limit is 32768"),
    (["submit", "refund please", "--priority", "urgent"], "priority"),
    (["submit", "refund please", "--tenant", "Acme Corp!"], "tenant"),
    (["submit", "refund please", "--tenant", ""], "tenant"),
    (["submit", "refund please", "--idempotency-key", "has spaces in it"], "idempotency_key"),
    (["submit", "refund please", "--conversation", "../../etc"], "conversation_id"),
    (["submit", "refund please", "--metadata", '{"nested": {"a": 1}}'], "metadata"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[b[1][:24] for b in BAD])
def test_cli_refuses_bad_input_and_writes_nothing(quiet_broker: str, argv: list[str], message: str) -> None:
    before = _counts()
    result = run_cli(*argv, "--json", env={"SWITCHBOARD_BROKER_URL": quiet_broker})

    assert result.returncode == 2, result.stderr
    assert message in json.loads(result.stdout)["error"]
    assert "Traceback" not in result.stderr
    assert _counts() == before
    assert _router_depth(quiet_broker) == 0


def test_valid_submit_writes_one_row_and_one_message(quiet_broker: str) -> None:
    before = _counts()
    result = run_cli("submit", "My invoice is wrong", "--json", env={"SWITCHBOARD_BROKER_URL": quiet_broker})

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "accepted"
    assert _counts()[0] == before[0] + 1
    assert _router_depth(quiet_broker) == 1


def test_client_refuses_wrong_types_and_says_which_field(services: object) -> None:
    from app.ingress import client

    before = _counts()
    for kwargs, field in [
        ({"text": b"bytes"}, "text"),
        ({"text": 42}, "text"),
        ({"text": "ok", "metadata": {"n": float("nan")}}, "metadata"),
        ({"text": "nul\x00byte"}, "text"),
        ({"text": "lone \ud800 surrogate"}, "text"),
    ]:
        with pytest.raises(client.InvalidRequest) as caught:
            client.submit(**kwargs)  # type: ignore[arg-type]
        assert field in str(caught.value)
    assert _counts() == before
