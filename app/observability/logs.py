"""Structured logs: one JSON object per line, with the request id whenever a request is being
worked on, so one request can be followed from ingress through the router to its specialist.

Workers switch it on through Celery's logging signals (SWITCHBOARD_LOG_JSON, on by default); an
app that embeds the client can install `JsonFormatter` and `RequestIdFilter` on its own handlers.
"""

from __future__ import annotations

import ast
import json
import logging
from datetime import UTC, datetime
from typing import Any

from celery import current_task

from app.observability import tracing
from app.request_scope import current_request_id

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request being worked on in this thread (None outside one);
    an explicit `extra={"request_id": ...}` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id() or _celery_request_id(record)
        return True


# RECONCILE_TASK and SUBMIT_TASK (app/orchestration/celery_app.py, which this module must not import).
_TAKE_NO_REQUEST_ID = frozenset({"switchboard.reconcile", "switchboard.submit"})


def _celery_request_id(record: logging.LogRecord) -> str | None:
    """Celery's own lines about a task ("received", "succeeded in") are logged outside the task;
    their `data` names the task and its arguments, and every Switchboard task's first argument
    is the request id, but for the reconciler's and submit's (whose arguments are the submission)."""
    data = getattr(record, "data", None)
    if not isinstance(data, dict) or not str(data.get("name", "")).startswith("switchboard."):
        return None
    if data.get("name") in _TAKE_NO_REQUEST_ID:
        return None
    args = data.get("args")
    try:
        parsed = ast.literal_eval(args) if isinstance(args, str) else args
    except (ValueError, SyntaxError):
        return None
    first = parsed[0] if isinstance(parsed, (list, tuple)) and parsed else None
    return first if isinstance(first, str) else None


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str = "") -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": self.process_name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", None),
            "message": record.getMessage(),
        }
        entry.update(tracing.log_ids())
        task = _current_task_id()
        if task:
            entry["task_id"] = task
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _current_task_id() -> str | None:
    task = current_task
    return getattr(getattr(task, "request", None), "id", None) if task else None


def install(logger: logging.Logger, process_name: str) -> None:
    """Make every handler of `logger` write JSON lines stamped with the request id."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter(process_name))
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
