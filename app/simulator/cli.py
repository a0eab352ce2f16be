"""`python -m app.simulator`: the command line that starts the simulated provider under uvicorn."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from app.extras import unavailable

try:  # the `demo` extra: only the demo, the tests and benchmarks run the simulated provider
    import uvicorn
except ModuleNotFoundError as exc:
    raise unavailable("demo", "the simulated provider (app.simulator)", exc) from exc

from app.simulator.config import SimulatorConfig
from app.simulator.server import create_app


def _arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.simulator",
        description="Simulated OpenAI-compatible LLM provider (flags override SWITCHBOARD_SIM_* env vars).",
    )
    # default=None everywhere so only flags actually given override the env.
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--models", help="comma separated model names")
    parser.add_argument("--api-keys", dest="api_keys", help="comma separated accepted keys (empty: any key)")
    parser.add_argument("--rpm", type=int, help="per key and model")
    parser.add_argument("--tpm", type=int, help="per key and model")
    parser.add_argument("--account-rpm", dest="account_rpm", type=int, help="per key, across all models")
    parser.add_argument("--account-tpm", dest="account_tpm", type=int, help="per key, across all models")
    parser.add_argument("--model-limits", dest="model_limits", help="model=RPM/TPM,... per key and model")
    parser.add_argument("--latency-ms", dest="latency_ms", type=float)
    parser.add_argument("--latency-jitter-ms", dest="latency_jitter_ms", type=float)
    parser.add_argument("--error-rate", dest="error_rate", type=float)
    parser.add_argument("--timeout-rate", dest="timeout_rate", type=float)
    # Test aid: a short rate-limit window gives short retry-after values (see SimulatorConfig).
    parser.add_argument("--rate-window-s", dest="rate_window_s", type=float)
    parser.add_argument("--seed", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _arg_parser()
    args = parser.parse_args(argv)
    overrides = {name: value for name, value in vars(args).items() if value is not None}
    try:
        config = SimulatorConfig(**overrides)
    except ValidationError as exc:
        print(f"invalid simulator configuration: {exc}", file=sys.stderr)
        return 2
    # Key count only: key values must never reach a log.
    print(
        f"switchboard simulator on http://{config.host}:{config.port} "
        f"models={','.join(config.models)} keys_configured={len(config.api_keys)} "
        f"rpm={config.rpm} tpm={config.tpm} account_rpm={config.account_rpm} "
        f"account_tpm={config.account_tpm} model_limits={config.model_limits} latency_ms={config.latency_ms}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
        workers=1,
        limit_concurrency=None,
        backlog=2048,
        # Simulated 120 s hangs must not hold up Ctrl-C.
        timeout_graceful_shutdown=1,
    )
    return 0
