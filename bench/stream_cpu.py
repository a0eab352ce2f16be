"""What streaming costs one process, without the rest of the engine: N threads each run the
technical draft's two model turns (a tool call, then the answer) against the simulated provider,
streamed (with live messages to RabbitMQ, as a worker sends them) or not, in alternating rounds.

`python bench/stream_cpu.py [--threads N] [--rounds R] [--latency-ms L] [--no-live]`

Process CPU (time.process_time) per draft on each side, socket reads and voluntary context
switches per draft: far less moved by the machine's load than the whole-engine bench
(bench/streaming.py). Last line: {"cpu_ms_per_draft": {plain, streamed}, "extra_ms", ...}.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from app.inference import provider
from app.inference.adapters import ChatRequest, adapter_for
from app.orchestration import live
from specialists.technical.tools import TOOLS
from workflows.support_ticket import HANDOFF_TOOL

ROOT = Path(__file__).resolve().parents[1]
TOOL_SCHEMAS = [t.schema() for t in TOOLS] + [HANDOFF_TOOL.schema()]
SYSTEM = (ROOT / "specialists/technical/prompt.md").read_text()
TEXT = "The export page crashes with error 500 when I open it (ticket {n})"
TOOL_RESULT = json.dumps({"status": "operational", "articles": [{"slug": "export-errors", "title": "Export errors"}]})
READS = [0]


def _count_reads() -> None:
    """Count socket reads: those through httpcore's own stream class (plain calls, and a streamed
    answer's headers) and the stream pump's reads of a streamed body (private: a bench's probe only)."""
    from httpcore._backends import sync

    from app.inference import stream_pump

    read = sync.SyncStream.read
    receive = stream_pump._Pump._receive

    def counted(self: Any, max_bytes: int, timeout: float | None = None) -> bytes:
        READS[0] += 1
        return read(self, max_bytes, timeout)

    def pumped(stream: Any) -> bytes | None:
        READS[0] += 1
        return receive(stream)

    sync.SyncStream.read = counted  # type: ignore[method-assign]
    stream_pump._Pump._receive = staticmethod(pumped)  # type: ignore[method-assign]


def _draft(base: str, n: int, streamed: bool, with_live: bool) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "system", "content": "Ticket summary: the export page fails\nContext from our systems: {}"},
        {"role": "user", "content": TEXT.format(n=n)},
    ]
    answer = live.LiveAnswer(f"bench-{n}-{time.monotonic()}", "draft") if streamed and with_live else None
    on_delta = (answer.delta if answer else lambda _text: None) if streamed else None
    for _turn in range(5):
        if answer:
            answer.begin()
        response = provider.chat(adapter_for("openai"), base_url=base, api_key="sk-switchboard-dev", key_id="bench",
                                 request=ChatRequest("sim-large", messages, tools=TOOL_SCHEMAS), on_delta=on_delta)
        if not response.tool_calls:
            return
        messages.append(response.assistant_message())
        messages += [{"role": "tool", "tool_call_id": c.id, "content": TOOL_RESULT} for c in response.tool_calls]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=int, default=2000)
    parser.add_argument("--no-live", action="store_true", help="streamed without live messages")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    simulator = subprocess.Popen(
        [sys.executable, "-m", "app.simulator", "--port", str(port), "--latency-ms", str(args.latency_ms),
         "--rpm", "0", "--tpm", "0"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        base, n = f"http://127.0.0.1:{port}/v1", args.threads
        _count_reads()
        result: dict[str, dict[str, list[float]]] = {"cpu_ms_per_draft": {}, "reads_per_draft": {}, "voluntary_switches_per_draft": {}}
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda i: _draft(base, i, True, not args.no_live), range(n)))  # warm-up
            for r in range(args.rounds):
                for side in ("plain", "streamed") if r % 2 == 0 else ("streamed", "plain"):
                    READS[0], cpu, switches = 0, time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
                    list(pool.map(lambda i, s=side: _draft(base, i, s == "streamed", not args.no_live), range(n)))
                    for key, value in (("cpu_ms_per_draft", (time.process_time() - cpu) * 1000),
                                       ("reads_per_draft", READS[0]),
                                       ("voluntary_switches_per_draft", resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switches)):
                        result[key].setdefault(side, []).append(round(value / n, 3))
        cpu_ms = result["cpu_ms_per_draft"]
        summary = {**result, "extra_ms": round(statistics.fmean(cpu_ms["streamed"]) - statistics.fmean(cpu_ms["plain"]), 3),
                   "threads": n, "rounds": args.rounds, "live": not args.no_live}
        print(json.dumps(summary))
    finally:
        simulator.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
