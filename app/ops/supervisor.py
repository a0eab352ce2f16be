"""Starts processes (worker pools, the simulated provider, Flower), restarts crashed ones, and
stops them all with a warm shutdown so no task in progress is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from app.ops.pools import ProcessSpec, queue_of_node
from app.orchestration.celery_app import celery


class Supervisor:
    def __init__(self, log_dir: Path, *, env: dict[str, str] | None = None, restart: bool = True) -> None:
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.restart = restart
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.specs: dict[str, ProcessSpec] = {}
        self.restarts: dict[str, int] = {}
        self._stopping = threading.Event()
        self._retired: set[str] = set()
        self._watcher: threading.Thread | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        log = open(self.log_path(spec.name), "ab")  # noqa: SIM115 - owned by the child for its lifetime
        process = subprocess.Popen(
            spec.argv,
            env={**self.env, **spec.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.processes[spec.name] = process
        self.specs[spec.name] = spec
        self._retired.discard(spec.name)
        if self.restart and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, daemon=True, name="supervisor")
            self._watcher.start()
        return process

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for name, process in list(self.processes.items()):
                code = process.poll()
                # 78 is a configuration error (e.g. a conflicting queue): restarting cannot fix it.
                if (
                    code is not None
                    and code != 78
                    and name not in self._retired
                    and not self._stopping.is_set()
                ):
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    self.start(self.specs[name])

    def stop(self, name: str | None = None, timeout: float = 30.0) -> None:
        """SIGTERM (Celery's warm shutdown: finish running tasks), then SIGKILL after `timeout`."""
        names = [name] if name else list(self.processes)
        if name is None:
            self._stopping.set()
        self._retired.update(names)
        for n in names:
            process = self.processes.get(n)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in names:
            process = self.processes.get(n)
            if process is None:  # stopped by another caller meanwhile
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            self.processes.pop(n, None)

    def kill(self) -> None:
        """SIGKILL whatever still runs (a second Ctrl-C): acks_late messages of running tasks go back
        to their queues and run again elsewhere."""
        self._stopping.set()
        self._retired.update(self.processes)
        for n, process in list(self.processes.items()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            self.processes.pop(n, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def wait_for_workers(queues: list[str], timeout: float = 60.0) -> None:
    """Block until a worker of every queue answers a ping (its pool is consuming)."""
    deadline = time.monotonic() + timeout
    missing = set(queues)
    while missing:
        replies = celery.control.ping(timeout=1.0) or []
        answered = {queue_of_node(name) for reply in replies for name in reply}
        missing -= answered
        if missing and time.monotonic() > deadline:
            raise TimeoutError(f"no worker answered for queue(s) {sorted(missing)} within {timeout:g}s")


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Block until `url` answers 200 (a started HTTP process is serving)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g}s")
        time.sleep(0.1)
