"""What every command shares on the way out: `--json` prints one JSON document, and CommandError."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from app.errors import CliError


class CommandError(CliError):
    """A user-facing failure: printed without a traceback, exit code 2 (or `code`)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def emit(args: argparse.Namespace, payload: Any, human: Callable[[], object] | None = None) -> None:
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    if getattr(args, "json", False) or human is None:
        print(json.dumps(payload, default=str))
    else:
        human()
