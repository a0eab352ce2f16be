"""The worker pools: one Celery worker command per queue, derived from the specialist registry.

The Procfile, `switchboard workers up`, the demo and the integration tests all start pools from
these commands, so there is one definition of what a pool is.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from app.config import Settings, get_settings
from app.orchestration import metrics_ports
from app.orchestration.registry import specialists
from app.orchestration.topology import CALLBACK_QUEUE, ROUTER_QUEUE, pool_queues, work_queue_names


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def concurrency_for(queue: str, settings: Settings) -> int:
    override = os.environ.get(f"SWITCHBOARD_{queue.upper()}_CONCURRENCY")
    if override:
        return int(override)
    if queue == ROUTER_QUEUE:
        return settings.router_concurrency
    if queue == CALLBACK_QUEUE:
        return settings.callbacks_concurrency
    spec = specialists()[queue]
    return spec.concurrency or settings.specialist_concurrency


def metrics_port_for(queue: str, settings: Settings) -> int:
    """Each process kind its own port, derived from its name, so one host can run every pool and
    adding a specialist moves no other pool's port; 0 means no metrics."""
    override = metrics_ports.override(queue)
    if override is not None:
        return override
    return metrics_ports.default_port(queue, settings.metrics_base_port)


def pool_env(queue: str, settings: Settings) -> dict[str, str]:
    env = {
        "SWITCHBOARD_PROCESS_NAME": queue,
        "SWITCHBOARD_METRICS_PORT": str(metrics_port_for(queue, settings)),
    }
    if settings.specialist_pool == "prefork":
        # Prefork children are separate processes: prometheus_client's multiprocess mode sums
        # their samples from files in a directory of this pool's own, served by the parent.
        directory = Path(tempfile.gettempdir()) / "switchboard-metrics" / f"{queue}-{uuid.uuid4().hex[:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return env


def process_name(queue: str, index: int = 0) -> str:
    """A pool's first process is named by its queue, more processes `<queue>-2`, `<queue>-3`, ...
    (queue names never contain '-')."""
    return queue if index == 0 else f"{queue}-{index + 1}"


def queue_of_node(node: str) -> str:
    """`technical-2@host` -> `technical`."""
    return node.split("@", 1)[0].split("-", 1)[0]


def worker_argv(
    queue: str, concurrency: int, pool: str, *, python: str = sys.executable, index: int = 0
) -> list[str]:
    return [
        python,
        "-m",
        "celery",
        "-A",
        "app.orchestration.celery_app:celery",
        "worker",
        "-Q",
        ",".join(pool_queues(queue)),
        # Named by pool, so Flower and `celery inspect` show which pool a worker belongs to.
        "-n",
        f"{process_name(queue, index)}@%h",
        "-P",
        pool,
        "-c",
        str(concurrency),
        # Gossip and mingle add start-up latency and broker chatter that per-queue pools do not need.
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]


# A pool's extra processes (`scale` under `workers up`) serve metrics this far above its first.
EXTRA_PROCESS_PORT_STEP = metrics_ports.SLOTS


def worker_spec(
    queue: str, concurrency: int, settings: Settings | None = None, index: int = 0
) -> ProcessSpec:
    settings = settings or get_settings()
    env = pool_env(queue, settings)
    port = int(env["SWITCHBOARD_METRICS_PORT"])
    if port and index:
        env["SWITCHBOARD_METRICS_PORT"] = str(port + EXTRA_PROCESS_PORT_STEP * index)
    return ProcessSpec(
        process_name(queue, index),
        worker_argv(queue, concurrency, settings.specialist_pool, index=index),
        env,
    )


def pool_specs(settings: Settings | None = None, queues: list[str] | None = None) -> list[ProcessSpec]:
    settings = settings or get_settings()
    names = queues or work_queue_names()
    return [worker_spec(name, concurrency_for(name, settings), settings) for name in names]


def simulator_spec(settings: Settings | None = None, *extra: str) -> ProcessSpec:
    settings = settings or get_settings()
    return ProcessSpec(
        "simulator", [sys.executable, "-m", "app.simulator", "--port", str(settings.simulator_port), *extra]
    )


def api_argv(settings: Settings | None = None, *, python: str = sys.executable) -> list[str]:
    """uvicorn serving the HTTP API (app/ingress/http/asgi.py), with the stream
    endpoint (app/ingress/http/sse.py) on the same event loop: an open stream is a socket, not a thread.

    Connections live on the event loop, so slow clients (a header line every few seconds) cost a
    socket each and never a thread; a request takes one of SWITCHBOARD_API_THREADS threads, where
    its database and broker work runs, only once it has fully arrived. Before this, gunicorn's
    gthread worker gave each connection a thread while it read the headers: 8 slow clients stopped
    /healthz (bench/slow_clients.py).
    """
    settings = settings or get_settings()
    return [
        python,
        "-m",
        "uvicorn",
        "app.ingress.http.asgi:create_asgi",
        "--factory",
        "--host",
        settings.api_address,
        "--port",
        str(settings.api_port),
        "--workers",
        str(settings.api_workers),
        # h11 bounds the headers of one request (16 KiB) and idle kept-alive connections.
        "--http",
        "h11",
        "--timeout-keep-alive",
        str(settings.api_keepalive_s),
        "--lifespan",
        "off",
        "--no-server-header",
        # The access log shows client, method, path and status; never headers, so no API key reaches it.
        "--log-level",
        "info",
    ]


def api_spec(settings: Settings | None = None) -> ProcessSpec:
    return ProcessSpec("api", api_argv(settings), {"SWITCHBOARD_PROCESS_NAME": "api"})


def procfile() -> str:
    """The Procfile, one line per pool; `switchboard procfile --write` keeps it in step with the
    specialists SWITCHBOARD_SPECIALISTS names."""
    base = int(Settings.model_fields["metrics_base_port"].default)
    lines = [
        "# Generated by `switchboard procfile --write` from the specialist registry; scale a pool with its",
        "# SWITCHBOARD_<QUEUE>_CONCURRENCY variable or `honcho start -c <pool>=2`.",
    ]
    # Every pool loads the specialists this file was generated for, unless the environment says otherwise.
    enabled = f"SWITCHBOARD_SPECIALISTS=${{SWITCHBOARD_SPECIALISTS:-{','.join(get_settings().specialists)}}}"
    for name in work_queue_names():
        var = f"SWITCHBOARD_{name.upper()}_CONCURRENCY"
        fallback = "${SWITCHBOARD_SPECIALIST_CONCURRENCY:-16}" if name in specialists() else "4"
        port = f"${{SWITCHBOARD_{name.upper()}_METRICS_PORT:-{metrics_ports.default_port(name, base)}}}"
        lines.append(
            f"{name}: SWITCHBOARD_PROCESS_NAME={name} {enabled} SWITCHBOARD_METRICS_PORT={port} "
            f"celery -A app.orchestration.celery_app:celery worker -Q {','.join(pool_queues(name))} -n {name}@%h "
            f"-P ${{SWITCHBOARD_SPECIALIST_POOL:-threads}} -c ${{{var}:-{fallback}}} "
            "--without-gossip --without-mingle -l INFO"
        )
    lines += [
        (
            f"beat: {enabled} celery -A app.orchestration.celery_app:celery beat -l INFO "
            "--schedule /tmp/switchboard-beat-schedule"
        ),
        f"api: SWITCHBOARD_PROCESS_NAME=api {enabled} switchboard api",
        f"flower: {enabled} switchboard flower",
        "simulator: python -m app.simulator",
    ]
    return "\n".join(lines) + "\n"
