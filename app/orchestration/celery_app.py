"""The Celery app. Every reliability setting lives here, with the reason beside it.

Importing this module never imports worker code: clients send tasks by their stable names
(`switchboard.route`, `switchboard.specialist.<name>`), and only workers load the task modules,
`app.orchestration.tasks` and `app.ingress.submit_task`.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any

from celery import Celery, concurrency
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)
from kombu import Connection

from app.config import get_settings
from app.default_secrets import DefaultSecrets, refuse_defaults
from app.inference.cost import warn_unpriced
from app.observability import metrics, tracing
from app.observability.logs import install
from app.orchestration.registry import get_specialist
from app.orchestration.topology import (
    CALLBACK_QUEUE,
    EXCHANGE,
    ROUTER_QUEUE,
    SUBMIT_QUEUE,
    TopologyError,
    all_queues,
    declare,
    work_queues,
)

log = logging.getLogger(__name__)

# `-P threads` means the resizable threads pool (app/orchestration/thread_pool.py), so `switchboard scale`,
# `celery control pool_grow`/`pool_shrink` and `--autoscale` work on every pool the Procfile,
# `workers up` and the tests start. Set before the worker parses `-P`, which happens after the
# `-A` app is imported.
concurrency.ALIASES["threads"] = "app.orchestration.thread_pool:TaskPool"  # type: ignore[attr-defined]  # celery-types omits ALIASES

ROUTE_TASK = "switchboard.route"
SPECIALIST_TASK_PREFIX = "switchboard.specialist."
RECONCILE_TASK = "switchboard.reconcile"
CALLBACK_TASK = "switchboard.callback"
# What an app with no Switchboard code sends by name (kwargs only) to the `submit` queue.
SUBMIT_TASK = "switchboard.submit"


def route_for_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str] | None:
    if name == ROUTE_TASK:
        return {"queue": ROUTER_QUEUE, "routing_key": ROUTER_QUEUE}
    if name == SUBMIT_TASK:
        return {"queue": SUBMIT_QUEUE, "routing_key": SUBMIT_QUEUE}
    if name == CALLBACK_TASK:
        return {"queue": CALLBACK_QUEUE, "routing_key": CALLBACK_QUEUE}
    if name.startswith(SPECIALIST_TASK_PREFIX):
        queue = get_specialist(name.removeprefix(SPECIALIST_TASK_PREFIX)).queue
        return {"queue": queue, "routing_key": queue}
    return None


def create_celery() -> Celery:
    settings = get_settings()
    # The submit task is ingress's (a way in), the rest orchestration's; workers load both.
    app = Celery("switchboard", include=["app.orchestration.tasks", "app.ingress.submit_task"])
    app.conf.update(
        broker_url=settings.broker_url.get_secret_value(),
        # Publisher confirms: send_task returns only once RabbitMQ has taken the message, so an
        # accepted request is never silently lost between the record and the broker.
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        task_queues=work_queues(),
        task_default_queue=ROUTER_QUEUE,
        task_default_exchange=EXCHANGE.name,
        task_default_routing_key=ROUTER_QUEUE,
        task_routes=(route_for_task,),
        task_create_missing_queues=False,
        # No task_queue_max_priority: every work queue sets x-max-priority itself, and that default
        # would add it to `submit` too, which must stay declared as a plain Celery app declares it.
        task_default_priority=5,
        task_serializer="json",
        accept_content=["json"],
        # The record in PostgreSQL is the result store; Celery results would be a second truth.
        task_ignore_result=True,
        result_backend=None,
        # Ack only after the task finished, so a worker killed mid-task leaves its message to be
        # redelivered; tasks are idempotent (checkpointed steps, idempotent side effects).
        task_acks_late=True,
        # A child process that dies (OOM, kill -9) requeues its message instead of acking it (#1628).
        task_reject_on_worker_lost=True,
        # An unhandled failure or a time-limit kill rejects without requeue: RabbitMQ dead-letters
        # the message into <queue>.dlq rather than Celery acking it away.
        task_acks_on_failure_or_timeout=False,
        # Tasks wait on the LLM for seconds; prefetching more would strand work on a busy worker
        # and defeat priorities.
        worker_prefetch_multiplier=1,
        # Time limits below RabbitMQ's consumer_timeout (30 min by default): Celery ends a stuck
        # task before the broker closes the channel and redelivers everything on it. A threads
        # pool cannot end a task, so there the steps bound themselves (workflows/engine.py): a
        # deadline before each LLM call, the provider's HTTP timeout, the statement timeout.
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        # Not cancelling tasks on a broker connection loss: the threads pool cannot kill a running
        # task anyway ("TaskPool does not implement kill_job"). The redelivered copy may run beside
        # it; checkpoints and idempotent side effects make that safe.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # After a broker restart Celery lowers the prefetch count while it waits for unacked
        # tasks; with the threads pool this left pools consuming nothing (fault suite, 5 of 8
        # runs). Keep the prefetch count as configured.
        worker_enable_prefetch_count_reduction=False,
        # Task events cost three confirmed publishes per task; Flower switches them on while it
        # runs (its --enable-events default), so workers do not send them to nobody.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        beat_schedule={
            # Publishes requests written but never published (a crash or broker outage between
            # the two); safe to run from several beat processes.
            "reconcile-unpublished": {"task": RECONCILE_TASK, "schedule": 30.0},
        },
    )
    return app


celery = create_celery()


def use_broker(url: str) -> None:
    """Point this process's publishing at another broker (tools and tests that switch vhosts);
    the cached connection and producer pools are dropped so the next publish reconnects."""
    celery.conf.update(broker_url=url)
    # Celery has no public way to drop these caches; its own close() also deregisters the app.
    celery._pool = None  # type: ignore[attr-defined]  # private, absent from celery-types
    celery.amqp._producer_pool = None  # type: ignore[attr-defined]  # private, absent from celery-types


def _refuse_default_secrets(role: str) -> None:
    try:
        refuse_defaults(role)
    except DefaultSecrets as exc:
        print(f"switchboard: {exc}", file=sys.stderr, flush=True)
        os._exit(78)  # a configuration error: restarting cannot fix it


@worker_init.connect
def _check_worker_secrets(sender: Any = None, **_: Any) -> None:
    # First of the start-up hooks: a pool using development credentials must not start consuming.
    _refuse_default_secrets("callbacks" if get_settings().process_name == CALLBACK_QUEUE else "worker")


@beat_init.connect
def _check_beat_secrets(sender: Any = None, **_: Any) -> None:
    _refuse_default_secrets("beat")


@worker_init.connect
def _declare_topology(sender: Any = None, **_: Any) -> None:
    # A queue with conflicting arguments would make Celery's consumer reconnect forever; stop once
    # with a message an operator can act on (exit code 78: configuration error, do not restart).
    try:
        with Connection(get_settings().broker_url.get_secret_value()) as conn:
            declare(conn)
    except TopologyError as exc:
        print(f"switchboard: {exc}", file=sys.stderr, flush=True)
        os._exit(78)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _structured_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    settings = get_settings()
    if settings.log_json and logger is not None:
        install(logger, settings.process_name)


def _queue_names() -> list[str]:
    return [queue.name for queue in all_queues()]


@worker_init.connect
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    settings = get_settings()
    # Only the router exports the fleet-wide gauges (queue depths, breakers, spend).
    fleet = _queue_names if settings.process_name == ROUTER_QUEUE else None
    metrics.serve(settings.metrics_port, fleet=fleet)


@worker_init.connect
def _trace(sender: Any = None, **_: Any) -> None:
    tracing.setup(get_settings().process_name)


@worker_init.connect
def _warn_unpriced(sender: Any = None, **_: Any) -> None:
    warn_unpriced()


@worker_ready.connect
@worker_process_init.connect
def _freeze_startup_heap(**_: Any) -> None:
    # Everything loaded to start (modules, specialists, the classifier, the pool's threads) lives
    # as long as the process: frozen, a full collection no longer walks it. Unfrozen, one full
    # collection took about 90 ms in a technical worker (bench/streaming.py's probe), in whichever
    # phase crossed the collector's threshold. Frozen once the worker is ready (and in each forked
    # child of a prefork pool), after a collection so that no garbage is kept.
    gc.collect()
    gc.freeze()


@worker_process_shutdown.connect
def _child_exited(pid: int | None = None, **_: Any) -> None:
    metrics.process_exited(pid or os.getpid())
