"""The broker channel as Switchboard uses it: pyamqp's, whose AMQP methods (queue_declare,
basic_publish, basic_ack, queue_purge, close) kombu's abstract channel type does not name."""

from __future__ import annotations

from typing import cast

from kombu.transport.base import StdChannel
from kombu.transport.pyamqp import Channel


def amqp_channel(channel: StdChannel) -> Channel:
    """`channel` typed as the pyamqp transport's own: the broker is RabbitMQ, reached over pyamqp
    (an `amqp://` URL), so every channel kombu hands out here is one. No check at run time."""
    return cast(Channel, channel)
