"""Checks that RabbitMQ and PostgreSQL answer, with an error that says how to start the one that doesn't."""

from __future__ import annotations

from amqp.exceptions import AMQPError
from kombu import Connection
from kombu.exceptions import KombuError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from app.config import get_settings
from app.errors import OpsError


class ServiceUnavailable(OpsError, RuntimeError):
    pass


def check_broker() -> None:
    url = get_settings().broker_url.get_secret_value()
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    # Refused or unresolvable (KombuError), a wrong password or vhost (AMQPError), a socket error.
    except (KombuError, AMQPError, OSError) as exc:
        safe = Connection(url).as_uri()  # kombu masks the password
        raise ServiceUnavailable(
            f"RabbitMQ is not reachable at {safe} ({type(exc).__name__}). Start it "
            "(`rabbitmq-server -detached`, or `docker compose -f docker/compose.yaml up -d rabbitmq`) "
            "or set SWITCHBOARD_BROKER_URL."
        ) from None


def check_database() -> None:
    url = make_url(get_settings().database_url.get_secret_value())
    # The server, not the database: `switchboard migrate` creates a missing database.
    engine = create_engine(
        url.set(database="postgres"), poolclass=NullPool, connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:  # the driver's errors arrive wrapped (OperationalError)
        raise ServiceUnavailable(
            f"PostgreSQL is not reachable at {url.render_as_string(hide_password=True)} ({type(exc).__name__}). "
            "Start it (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or "
            "`docker compose -f docker/compose.yaml up -d postgres`) or set SWITCHBOARD_DATABASE_URL."
        ) from None
    finally:
        engine.dispose()


def check_services() -> None:
    check_broker()
    check_database()
