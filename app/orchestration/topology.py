"""Exchanges and queues, derived from the specialist registry.

Every work queue (the router's and one per specialist) is durable, priority-aware and dead-letters
into `<queue>.dlq` through one dead-letter exchange. Adding a specialist module adds its queues here
with no other edit.
"""

from __future__ import annotations

from contextlib import suppress

from amqp.exceptions import AMQPError, PreconditionFailed
from kombu import Connection, Exchange, Queue

from app.broker_channel import amqp_channel
from app.errors import OrchestrationError
from app.orchestration.registry import specialists

# Delivery callbacks have a queue and a pool of their own (CALLBACK_QUEUE): a slow receiver never
# holds a specialist. The engine's queue names live with the contract, which reserves them.
# Apps send `switchboard.submit` by name to SUBMIT_QUEUE; the router pool consumes it beside its own.
from app.orchestration.specialist import CALLBACK_QUEUE, ROUTER_QUEUE, SUBMIT_QUEUE

EXCHANGE = Exchange("switchboard", type="direct", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("switchboard.dlx", type="direct", durable=True)
MAX_PRIORITY = 9
PRIORITIES: dict[str, int] = {"high": 9, "normal": 5, "low": 1}


class TopologyError(OrchestrationError, RuntimeError):
    """The broker holds a queue that cannot be used as declared; an operator must act."""


def dlq_name(queue: str) -> str:
    return f"{queue}.dlq"


def work_queue(name: str) -> Queue:
    return Queue(
        name,
        EXCHANGE,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            "x-dead-letter-routing-key": dlq_name(name),
            "x-max-priority": MAX_PRIORITY,
        },
    )


def dead_letter_queue(name: str) -> Queue:
    return Queue(dlq_name(name), DEAD_LETTER_EXCHANGE, routing_key=dlq_name(name), durable=True)


def submit_queue() -> Queue:
    """The `submit` queue, declared exactly as a plain Celery app declares a queue it is told to send
    to (its own durable direct exchange, routing key = name, no arguments), so an app's default
    declaration and ours never clash with PRECONDITION_FAILED. Having no dead-letter exchange, it
    relies on the submit task to publish bad input to `submit.dlq` itself."""
    return Queue(
        SUBMIT_QUEUE,
        Exchange(SUBMIT_QUEUE, type="direct", durable=True),
        routing_key=SUBMIT_QUEUE,
        durable=True,
    )


def pool_queues(queue: str) -> list[str]:
    """The queues the pool named by `queue` consumes: its own, and for the router also `submit`
    (validating and recording a submission is router-sized work, not worth a pool of its own)."""
    return [ROUTER_QUEUE, SUBMIT_QUEUE] if queue == ROUTER_QUEUE else [queue]


def work_queue_names() -> list[str]:
    return [ROUTER_QUEUE, *(spec.queue for spec in specialists().values()), CALLBACK_QUEUE]


def work_queues() -> list[Queue]:
    """What workers consume."""
    return [*(work_queue(name) for name in work_queue_names()), submit_queue()]


def dead_lettering_queue_names() -> list[str]:
    """Every queue with a `<queue>.dlq`: the work queues, and `submit`, whose task fills its own."""
    return [*work_queue_names(), SUBMIT_QUEUE]


def all_queues() -> list[Queue]:
    return [*work_queues(), *(dead_letter_queue(name) for name in dead_lettering_queue_names())]


def declare(connection: Connection) -> list[str]:
    """Declare everything; safe to repeat. Raises TopologyError naming the queue that conflicts."""
    declared = []
    for queue in all_queues():
        channel = amqp_channel(connection.channel())
        try:
            queue(channel).declare()
        except PreconditionFailed as exc:
            raise TopologyError(
                f"RabbitMQ already has a queue {queue.name!r} declared with other arguments "
                f"({exc.reply_text}). Switchboard declares it with {queue.queue_arguments or {}}. "
                f"Drain it, then delete it (rabbitmqctl delete_queue {queue.name}) so it can be declared "
                "again, or point SWITCHBOARD_BROKER_URL at another vhost."
            ) from None
        finally:
            # The broker closes the channel itself after a failed declare, or the connection dropped.
            with suppress(AMQPError, OSError):
                channel.close()
        declared.append(queue.name)
    return declared
