"""Finds RabbitMQ and PostgreSQL for the integration tests: the local services if they answer,
else containers through testcontainers when a Docker engine runs, else nothing (tests skip)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


@dataclass
class Services:
    broker_url: str
    database_url: str
    vhost: str
    origin: str  # "local" or "testcontainers"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def scratch_vhost(base_broker: str, name: str) -> Iterator[str]:
    """A RabbitMQ vhost of its own, so test runs never see each other's messages."""
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        # "amqp://host:5672//" names the default vhost "/"; the scratch one replaces it.
        yield base_broker.rstrip("/") + "/" + name
    finally:
        _rabbitmqctl("delete_vhost", name)


@contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    url = make_url(server_url)
    admin = create_engine(url.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def provide() -> Iterator[Services | None]:
    run = uuid.uuid4().hex[:8]
    if _port_open("127.0.0.1", 5672) and _port_open("127.0.0.1", 5432) and shutil.which("rabbitmqctl"):
        with scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", f"sb-test-{run}") as broker, \
                scratch_database("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", f"sb_test_{run}") as db:
            yield Services(broker, db, f"sb-test-{run}", "local")
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-management") as rabbit, PostgresContainer("postgres:16") as pg:
            broker = f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}//"
            server = pg.get_connection_url().replace("postgresql+psycopg2", "postgresql+psycopg")
            with scratch_database(server, f"sb_test_{run}") as db:
                yield Services(broker, db, "/", "testcontainers")
        return
    yield None
