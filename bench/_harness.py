"""Shared helpers for the benchmarks: scratch services, processes, probes and CPU accounting.

Everything here cleans up after itself: scratch vhosts and databases are context managers, started
processes belong to a `Supervisor` that is stopped on exit, and `install_signal_handlers()` turns
SIGTERM/SIGHUP into KeyboardInterrupt so the same `finally` blocks run as on Ctrl-C.

`python -m bench._harness probe ROLE -- -m celery ...` runs a module (normally the Celery worker)
with in-process counters installed (SQL statements, commits, pool checkouts, AMQP publishes, HTTP
requests, threads started, tasks run). The counters are written to $BENCH_PROBE_DIR every 0.25 s;
`read_probes()` sums them by role so a benchmark can take before/after deltas of a phase.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASE_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def print_result(result: dict[str, Any], as_json: bool) -> None:
    """A bench's last line: one JSON object with --json, else one aligned line per figure."""
    if as_json:
        print(json.dumps(result))
        return
    width = max((len(key) for key in result), default=0) + 2
    for key, value in result.items():
        print(f"{key:>{width}}: {value}")


def run_id() -> str:
    return uuid.uuid4().hex[:8]


# --- signals ---------------------------------------------------------------------------------------


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, so cleanup runs as on Ctrl-C."""

    def _interrupt(signum: int, _frame: Any) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the cleanup
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


# --- scratch services ------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_vhost(name: str, base_broker: str = BASE_BROKER) -> Iterator[str]:
    """A RabbitMQ vhost of its own (deleted on exit); yields its broker URL."""
    from tests.support.services import scratch_vhost as _scratch_vhost

    log(f"creating vhost {name}")
    with _scratch_vhost(base_broker, name) as url:
        try:
            yield url
        finally:
            log(f"deleting vhost {name}")


@contextlib.contextmanager
def scratch_database(name: str, server_url: str = PG_SERVER) -> Iterator[str]:
    """A PostgreSQL database of its own (dropped WITH (FORCE) on exit); yields its SQLAlchemy URL."""
    from tests.support.services import scratch_database as _scratch_database

    log(f"creating database {name}")
    with _scratch_database(server_url, name) as url:
        try:
            yield url
        finally:
            log(f"dropping database {name}")


def psycopg_dsn(sqlalchemy_url: str) -> str:
    """The libpq form of a postgresql+psycopg:// URL, for plain psycopg connections."""
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# --- processes -------------------------------------------------------------------------------------


def unlimited_switchboard_env(broker: str, database: str, port: int, concurrency: int) -> dict[str, str]:
    """Switchboard's settings for a throughput bench: its scratch broker and database, the simulator on
    `port`, no provider limits (the limiter is not what is measured) and `concurrency` threads per pool."""
    c = str(concurrency)
    return {
        "SWITCHBOARD_BROKER_URL": broker,
        "SWITCHBOARD_DATABASE_URL": database,
        "SWITCHBOARD_PROVIDER_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "SWITCHBOARD_SIMULATOR_PORT": str(port),
        "SWITCHBOARD_PROVIDER_RPM": "0",
        "SWITCHBOARD_PROVIDER_TPM": "0",
        "SWITCHBOARD_SPECIALIST_POOL": "threads",
        "SWITCHBOARD_ROUTER_CONCURRENCY": c,
        "SWITCHBOARD_SPECIALIST_CONCURRENCY": c,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    from app.ops.supervisor import wait_http as _wait_http

    _wait_http(url, timeout)


@dataclasses.dataclass(frozen=True)
class ScratchSwitchboard:
    broker: str
    database: str
    simulator_port: int
    env: dict[str, str]  # what the benchmark's child processes need on top of child_env()


def scratch_switchboard(
    stack: contextlib.ExitStack, name: str, settings: dict[str, str]
) -> ScratchSwitchboard:
    """A vhost and a migrated, seeded database of their own, with this process's settings, engine
    and publisher pointed at them (undone when `stack` closes). `settings`: more SWITCHBOARD_* values."""
    broker = stack.enter_context(scratch_vhost(f"sb-{name}"))
    database = stack.enter_context(scratch_database(f"sb_{name.replace('-', '_')}"))
    port = free_port()
    env = {
        "SWITCHBOARD_BROKER_URL": broker,
        "SWITCHBOARD_DATABASE_URL": database,
        "SWITCHBOARD_PROVIDER_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "SWITCHBOARD_SIMULATOR_PORT": str(port),
        **settings,
    }
    # Switchboard reads settings (and caches its engine) on first use: set the environment first.
    os.environ.update(env)
    from app.config import reset_settings
    from app.ops.migrate import upgrade
    from app.ops.seeding import seed_enabled
    from app.orchestration.celery_app import celery, use_broker
    from app.state import dispose_engine, session_scope

    reset_settings()
    dispose_engine()
    use_broker(broker)
    stack.callback(celery.close)
    upgrade(database)
    with session_scope() as session:
        seed_enabled(session)
    stack.callback(dispose_engine)
    return ScratchSwitchboard(broker, database, port, env)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Environment for child processes: the repo importable (for `bench.*`), development mode (this
    machine's guest/postgres accounts and the development keys), plus `extra`."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""),
        "PYTHONUNBUFFERED": "1",
        "SWITCHBOARD_DEV": "true",
        **extra,
    }


def probed(argv: list[str], role: str) -> list[str]:
    """`[python, -m, X, ...]` -> the same command run under the probe, counters tagged with `role`."""
    if len(argv) < 3 or argv[1] != "-m":
        raise ValueError(f"can only probe `python -m module ...` commands, not {argv[:3]}")
    return [argv[0], "-m", "bench._harness", "probe", role, "--", *argv[1:]]


def wait_for_celery(app: Any, names: list[str], timeout: float = 90.0) -> None:
    """Block until a worker named `<name>@...` answers a ping for every name."""
    deadline = time.monotonic() + timeout
    missing = set(names)
    while missing:
        replies = app.control.ping(timeout=1.0)
        missing -= {name.split("@", 1)[0] for reply in replies for name in reply}
        if missing and time.monotonic() > deadline:
            raise TimeoutError(f"no worker answered for {sorted(missing)} within {timeout:g}s")


# --- CPU accounting --------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def cpu_snapshot(
    pids: dict[str, list[int]], databases: tuple[str, ...] = (), watchers: frozenset[int] = frozenset()
) -> dict[str, float]:
    """CPU seconds used so far by each role's processes, plus PostgreSQL, RabbitMQ and the machine.

    `postgres` is the backends serving `databases` (this benchmark's); the server's shared processes
    and other databases' backends count as `postgres_other`. `rabbitmq` is the whole broker (it
    cannot be split by vhost, so other users' traffic lands there too). `machine_busy` is all non-idle CPU
    time of the machine, so `machine_busy` minus everything else is load that is not the benchmark's.
    `watchers`: backends of the benchmark's own polling connections, counted as `postgres_poll`
    (the benchmark watching, not the system it measures).
    """
    import psutil

    snap = {role: sum(proc_cpu(pid) for pid in role_pids) for role, role_pids in pids.items()}
    pg = pg_other = pg_poll = rabbit = 0.0
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        name = proc.info["name"] or ""
        times = proc.info["cpu_times"]
        if times is None:
            continue
        used = times.user + times.system
        if name == "postgres" or name.startswith("postgres:"):
            cmd = " ".join(proc.info["cmdline"] or [])
            # Backends look like "postgres: 15/main: user db 127.0.0.1(port) idle"; the server's own
            # processes (WAL writer, checkpointer, ...) serve every database and count as other.
            if proc.pid in watchers:
                pg_poll += used
            elif any(f" {db} " in cmd for db in databases):
                pg += used
            else:
                pg_other += used
        elif name == "beam.smp" and "rabbit boot" in " ".join(proc.info["cmdline"] or []):
            # The broker's VM only: rabbitmqctl runs short-lived beam.smp processes of its own.
            rabbit += used
    snap["postgres"] = pg
    snap["postgres_other"] = pg_other
    snap["postgres_poll"] = pg_poll
    snap["rabbitmq"] = rabbit
    machine = psutil.cpu_times()
    snap["machine_busy"] = sum(
        getattr(machine, f, 0.0) for f in ("user", "system", "nice", "irq", "softirq", "steal")
    )
    return snap


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}


# --- the probe -------------------------------------------------------------------------------------


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: collections.Counter[str] = collections.Counter()

    def inc(self, key: str, n: float = 1) -> None:
        with self._lock:
            self.values[key] += n

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.values)


COUNTERS = _Counters()


def install_probe() -> None:
    """Count, in this process: SQL statements (by verb), commits, pool checkouts and new connections,
    AMQP publishes, HTTP requests, threads and thread pools started, Celery tasks and their time."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    inc = COUNTERS.inc

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        inc("db_statements")
        inc("db_statements." + (statement.lstrip().split(None, 1)[0].lower() if statement.strip() else "?"))

    @event.listens_for(Engine, "commit")
    def _commit(conn: Any) -> None:
        inc("db_commits")

    @event.listens_for(Engine, "rollback")
    def _rollback(conn: Any) -> None:
        inc("db_rollbacks")

    @event.listens_for(Pool, "checkout")
    def _checkout(*args: Any) -> None:
        inc("db_checkouts")

    @event.listens_for(Pool, "connect")
    def _connect(*args: Any) -> None:
        inc("db_connects")

    import kombu.messaging

    publish = kombu.messaging.Producer.publish

    def _publish(self: Any, *args: Any, **kwargs: Any) -> Any:
        inc("amqp_publishes")
        started = time.perf_counter()
        try:
            return publish(self, *args, **kwargs)
        finally:
            inc("amqp_publish_s", time.perf_counter() - started)

    kombu.messaging.Producer.publish = _publish  # type: ignore[method-assign]

    import httpx

    send = httpx.Client.send

    def _send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        inc("http_requests")
        started = time.perf_counter()
        try:
            return send(self, request, *args, **kwargs)
        finally:
            inc("http_s", time.perf_counter() - started)

    httpx.Client.send = _send  # type: ignore[method-assign]

    thread_start = threading.Thread.start

    def _start(self: threading.Thread) -> None:
        inc("threads_started")
        thread_start(self)

    threading.Thread.start = _start  # type: ignore[method-assign]

    pool_init = ThreadPoolExecutor.__init__

    def _pool_init(self: Any, *args: Any, **kwargs: Any) -> None:
        inc("thread_pools_created")
        pool_init(self, *args, **kwargs)

    ThreadPoolExecutor.__init__ = _pool_init  # type: ignore[method-assign]

    import gc

    gc_began = [0.0]

    def _gc(phase: str, info: dict[str, Any]) -> None:
        # Collections and the time they took, per generation: a streamed answer allocates per
        # chunk, and a full collection walks every object the worker holds.
        if phase == "start":
            gc_began[0] = time.perf_counter()
        else:
            inc(f"gc_collections.{info['generation']}")
            inc(f"gc_ms.{info['generation']}", (time.perf_counter() - gc_began[0]) * 1000)

    gc.callbacks.append(_gc)

    from celery import signals

    started_at: dict[str, float] = {}

    @signals.task_prerun.connect(weak=False)
    def _prerun(task_id: str | None = None, **_: Any) -> None:
        if task_id:
            started_at[task_id] = time.perf_counter()

    @signals.task_postrun.connect(weak=False)
    def _postrun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        name = getattr(task, "name", "?")
        inc("tasks")
        inc("tasks." + name)
        began = started_at.pop(task_id, None) if task_id else None
        if began is not None:
            inc("task_s", time.perf_counter() - began)
            inc("task_s." + name, time.perf_counter() - began)


def _probe_writer(directory: Path, role: str) -> None:
    path = directory / f"{role}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")

    def write() -> None:
        tmp.write_text(json.dumps({"role": role, "pid": os.getpid(), "counters": COUNTERS.snapshot()}))
        os.replace(tmp, path)

    def loop() -> None:
        while True:
            time.sleep(0.25)
            with contextlib.suppress(OSError):
                write()

    import atexit

    def final() -> None:
        with contextlib.suppress(OSError):
            write()

    atexit.register(final)
    threading.Thread(target=loop, daemon=True, name="bench-probe").start()


def read_probes(directory: Path) -> dict[str, dict[str, float]]:
    """Counters summed per role over every probed process that wrote to `directory`."""
    totals: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for file in directory.glob("*.json"):
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        totals[data["role"]].update(data["counters"])
    return {role: dict(c) for role, c in totals.items()}


def probe_delta(
    after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for role, counters in after.items():
        base = before.get(role, {})
        out[role] = {k: v - base.get(k, 0) for k, v in counters.items() if v - base.get(k, 0)}
    return out


def _probe_main(argv: list[str]) -> None:
    import runpy

    if len(argv) < 4 or argv[0] != "probe" or argv[2] != "--" or argv[3] != "-m":
        raise SystemExit("usage: python -m bench._harness probe ROLE -- -m MODULE [ARGS...]")
    role, module, rest = argv[1], argv[4], argv[5:]
    directory = Path(os.environ["BENCH_PROBE_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    install_probe()
    # The writer thread starts after the probe so a Celery worker's threads are counted from the
    # beginning; the counters are cumulative and benchmarks take deltas.
    _probe_writer(directory, role)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _probe_main(sys.argv[1:])
