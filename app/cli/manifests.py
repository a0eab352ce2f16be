"""`switchboard manifests`: Kubernetes manifests and the compose file (the `deploy` extra, checked before this loads)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.ops import compose
from app.ops.manifests import K8S_DIR, render, write


def cmd_manifests(args: argparse.Namespace) -> int:
    if not args.write:
        for path, text in render().items():
            sys.stdout.write(f"# Source: {K8S_DIR / path}\n{text}---\n")
        return 0
    written, removed = write(Path(args.dir))
    compose_file = Path(args.dir).parent / compose.COMPOSE_FILE.name
    if not compose_file.exists() or compose_file.read_text() != compose.render():
        compose_file.write_text(compose.render())
        print(f"wrote {compose_file}")
    for path in written:
        print(f"wrote {Path(args.dir) / path}")
    for path in removed:
        print(f"removed {Path(args.dir) / path} (no such pool any more)")
    if not written and not removed:
        print(f"{args.dir} is up to date")
    return 0
