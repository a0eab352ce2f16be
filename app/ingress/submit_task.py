"""The `switchboard.submit` Celery task: an app with no Switchboard code submits by task name.

Workers load it beside app/orchestration/tasks.py (the Celery app's `include`); it lives in ingress
because it is a way in, using the same validation and record as the client and the HTTP API.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from celery import Task
from celery.exceptions import Reject, Retry

from app.config import get_settings
from app.ingress import submissions
from app.ingress.client import InvalidRequest, Overloaded
from app.orchestration.celery_app import SUBMIT_TASK, celery
from app.orchestration.tasks import backoff_s
from app.orchestration.topology import SUBMIT_QUEUE

log = logging.getLogger(__name__)


# Any arguments at all, so that a wrong call reaches the task and is dead-lettered with its error
# rather than failing in Celery before it runs. The `submit` queue has no dead-letter exchange, so
# nothing may escape as a failure (RabbitMQ would drop the message): if even dead-lettering fails,
# the message goes back to the queue whole.
@celery.task(name=SUBMIT_TASK, bind=True, max_retries=None)
def submit(self: Task, *args: Any, **kwargs: Any) -> str | None:
    try:
        return _submit(self, args, kwargs)
    except Retry:
        raise
    except Exception as exc:  # noqa: BLE001 - nothing may escape: the submit queue has no dead-letter exchange
        log.warning(
            "submission %s: could not record or dead-letter it (%s); it goes back to the queue",
            self.request.id,
            type(exc).__name__,
        )
        raise Reject(f"{type(exc).__name__}; requeued", requeue=True) from None


def _submit(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    task_id = cast(str, task.request.id)  # None only for a task called outside a worker
    try:
        submission = submissions.submit(args, kwargs, task_id)
    except Overloaded as exc:  # a low-priority submission waits its turn, as over HTTP
        _retry_or_dead_letter(task, args, kwargs, str(exc), countdown=exc.retry_after_s)
        return None
    except InvalidRequest as exc:
        log.warning("submission %s refused into %s.dlq: %s", task_id, SUBMIT_QUEUE, exc)
        submissions.dead_letter(task_id, args, kwargs, str(exc))
        return None
    except Exception as exc:  # noqa: BLE001 - the record or the broker is unavailable: try again later
        # Only the error's type: a driver's message can carry connection details.
        _retry_or_dead_letter(task, args, kwargs, f"{type(exc).__name__} while recording the request")
        return None
    log.info(
        "submission %s recorded as request %s (duplicate=%s)", task_id, submission.id, submission.duplicate
    )
    return submission.id


def _retry_or_dead_letter(
    task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], error: str, countdown: float | None = None
) -> None:
    attempt = task.request.retries + 1
    if attempt < get_settings().max_attempts:
        delay = countdown if countdown is not None else backoff_s(attempt)
        raise task.retry(countdown=delay, max_retries=None)
    error = f"{error} (gave up after {attempt} attempts; `switchboard dlq replay` sends it again)"
    log.error("submission %s dead-lettered into %s.dlq: %s", task.request.id, SUBMIT_QUEUE, error)
    submissions.dead_letter(cast(str, task.request.id), args, kwargs, error)
