"""Slow clients against the HTTP API: a normal client's requests/s while N slowloris connections (a
request line, then one header line every 2 s, never finished) are open, on the API server as
`switchboard api` runs it (uvicorn, app/ingress/http/asgi.py) and, as the baseline measured in the same
run, on the server it replaced (gunicorn's gthread worker, same processes and threads).

The normal client reads one request of its tenant (`GET /v1/requests/ID`, authenticated: a key
lookup and a record read in PostgreSQL) over a kept-alive connection, one request at a time, for
--seconds; a request unanswered after 2 s counts as a timeout and the client reconnects.

`python bench/slow_clients.py --json [--slow 0,8,64] [--seconds 10] [--threads 4]`
Last line: {"servers": {"uvicorn": {N: {...}}, "gthread": {N: {...}}}, "rps_ratio": {N: uvicorn/gthread},
"cpu_per_request_ratio": the server's CPU per request with no slow client, uvicorn/gthread}.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h

TRICKLE_EVERY_S = 2.0
PATIENCE_S = 2.0


def gthread_argv(port: int, threads: int) -> list[str]:
    """The API server before: gunicorn's gthread worker, as app/ops/pools.py ran it."""
    return [sys.executable, "-m", "gunicorn", "app.ingress:create_app()", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--worker-class", "gthread", "--threads", str(threads),
            "--access-logfile", "-", "--error-logfile", "-"]


class Slowloris:
    """N connections that never finish their headers, each sending one more line every 2 s."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._trickle, daemon=True) for _ in range(count)]

    def _trickle(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return
        self.sockets.append(sock)
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
            n = 0
            while not self.stop.wait(TRICKLE_EVERY_S):
                sock.sendall(f"X-Slow-{n}: {n}\r\n".encode())
                n += 1

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        time.sleep(TRICKLE_EVERY_S * 1.5)  # every one connected and past its first line
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for sock in self.sockets:
            sock.close()
        for t in self.threads:
            t.join(5)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a server process and its children (gunicorn's worker is a child)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0.0
    return h.proc_cpu(pid) + sum(h.proc_cpu(c.pid) for c in children)


def measure(base: str, token: str, request_id: str, seconds: float, pid: int | None = None) -> dict[str, Any]:
    import httpx

    answered = timeouts = 0
    latencies: list[float] = []
    cpu_before = tree_cpu(pid) if pid else 0.0
    deadline = time.monotonic() + seconds
    def connect() -> httpx.Client:
        return httpx.Client(base_url=base, timeout=PATIENCE_S, headers={"Authorization": f"Bearer {token}"})

    http = connect()
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = http.get(f"/v1/requests/{request_id}")
                response.raise_for_status()
                answered += 1
                latencies.append(time.perf_counter() - started)
            except httpx.TimeoutException:
                timeouts += 1
                http.close()
                http = connect()
    finally:
        http.close()
    latencies.sort()
    cpu = tree_cpu(pid) - cpu_before if pid else 0.0
    return {
        "rps": round(answered / seconds, 1),
        # The server's CPU per answered request: steadier than requests/s on a shared machine.
        "server_cpu_ms_per_request": round(cpu * 1000 / answered, 2) if answered else None,
        "answered": answered,
        "timeouts": timeouts,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
        "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 2) if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", default="0,8,64", help="slowloris connection counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="the normal client's run per figure")
    parser.add_argument("--threads", type=int, default=4, help="request threads of the one server process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.slow.split(",")]
    h.install_signal_handlers()
    results: dict[str, dict[int, dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        sb = h.scratch_switchboard(stack, f"slow-{h.run_id()}",
                                   {"SWITCHBOARD_API_THREADS": str(args.threads)})
        from app.config import get_settings
        from app.ingress import client, tenants
        from app.ops.pools import api_spec
        from app.ops.supervisor import Supervisor

        tenants.create_tenant("bench")
        token = tenants.create_key("bench").token
        request_id = client.accept(client.validate(text="Where is my invoice?", tenant="bench")).id
        supervisor = stack.enter_context(Supervisor(Path(".switchboard") / f"bench-slow-{h.run_id()}",
                                                    env=h.child_env(sb.env), restart=False))
        ports = {"uvicorn": h.free_port(), "gthread": h.free_port()}
        pids: dict[str, int] = {}
        for server, port in ports.items():
            spec = api_spec(get_settings().model_copy(update={"api_port": port, "api_workers": 1}))
            if server == "gthread":
                spec = replace(spec, argv=gthread_argv(port, args.threads))
            pids[server] = supervisor.start(replace(spec, name=f"api-{server}")).pid
            h.wait_http(f"http://127.0.0.1:{port}/healthz", 60)
            measure(f"http://127.0.0.1:{port}", token, request_id, 1.0)  # warm: connection pools, imports
            results[server] = {}
        # Back to back, and which goes first alternates: the machine's other load drifts.
        for index, count in enumerate(counts):
            for server in (list(ports) if index % 2 == 0 else list(reversed(ports))):
                with Slowloris(ports[server], count):
                    results[server][count] = measure(f"http://127.0.0.1:{ports[server]}", token, request_id,
                                                     args.seconds, pids[server])
                h.log(f"{server}, {count} slow clients: {results[server][count]}")
    ratio = {c: (round(results["uvicorn"][c]["rps"] / results["gthread"][c]["rps"], 2)
                 if results["gthread"][c]["rps"] else None) for c in counts}
    cpu = [results[s][0]["server_cpu_ms_per_request"] for s in ("uvicorn", "gthread")] if 0 in counts else []
    result = {"threads": args.threads, "seconds": args.seconds, "servers": results, "rps_ratio": ratio,
              # With no slow client: the server's CPU per request, uvicorn over gthread.
              "cpu_per_request_ratio": round(cpu[0] / cpu[1], 2) if len(cpu) == 2 and all(cpu) else None}
    if not args.json:
        for server, by_count in results.items():
            for count, m in by_count.items():
                print(f"{server:>8}, {count:>3} slow clients: {m['rps']:>7} requests/s, "
                      f"{m['timeouts']} timeouts, p50 {m['p50_ms']} ms, p95 {m['p95_ms']} ms")
    h.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
