"""Multi-step flows. A module here defines `WORKFLOW = Workflow(...)`; specialists name it."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from workflows.engine import Workflow


@lru_cache(maxsize=1)
def workflows() -> dict[str, Workflow]:
    found: dict[str, Workflow] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "engine" or info.name.startswith("_"):
            continue
        flow = getattr(importlib.import_module(f"workflows.{info.name}"), "WORKFLOW", None)
        if isinstance(flow, Workflow):
            found[flow.name] = flow
    return found


def get_workflow(name: str) -> Workflow:
    try:
        return workflows()[name]
    except KeyError:
        raise LookupError(f"unknown workflow {name!r}; known: {', '.join(workflows())}") from None
