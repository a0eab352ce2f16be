"""Discovers specialists from SWITCHBOARD_SPECIALISTS: module or package paths, comma-separated.

An entry is a module that defines SPECIALIST, or a package that defines it itself (a specialist
kept as a package: tools, prompt and routing examples beside its code) or whose submodules and
subpackages do (the bundled `specialists` package), as Celery's `autodiscover_tasks(packages)` finds
tasks in the user's packages. Everything per specialist (queues, DLQs, tasks, routing, pools,
Procfile, manifests, metrics, migrations, seed) is read from here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from functools import lru_cache
from types import ModuleType

from app.config import get_settings
from app.errors import OrchestrationError
from app.orchestration.metrics_ports import collisions
from app.orchestration.specialist import CALLBACK_QUEUE, ROUTER_QUEUE, Specialist


class RegistryError(OrchestrationError, RuntimeError):
    pass


def _import(path: str, entry: str) -> ModuleType:
    try:
        return importlib.import_module(path)
    except Exception as exc:
        where = "" if path == entry else f" (while importing {path!r})"
        raise RegistryError(
            f"SWITCHBOARD_SPECIALISTS entry {entry!r} cannot be imported{where}: "
            f"{type(exc).__name__}: {exc}. Is its directory on PYTHONPATH or its package installed?"
        ) from exc


def _modules(entry: str) -> Iterator[ModuleType]:
    """The entry itself if it defines SPECIALIST, else its submodules (sorted, `_private` skipped)."""
    module = _import(entry, entry)
    if hasattr(module, "SPECIALIST") or not hasattr(module, "__path__"):
        yield module
        return
    for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield _import(f"{entry}.{info.name}", entry)


def load(entries: list[str]) -> dict[str, Specialist]:
    found: dict[str, Specialist] = {}
    origin: dict[str, str] = {}
    for entry in entries:
        defined = 0
        for module in _modules(entry):
            spec = getattr(module, "SPECIALIST", None)
            if spec is None:
                continue
            defined += 1
            if module.__name__ in origin.values():
                continue  # listed twice (`specialists,specialists.billing`): one specialist
            if not isinstance(spec, Specialist):
                raise RegistryError(
                    f"{module.__name__}.SPECIALIST is a {type(spec).__name__}; "
                    "it must be an app.orchestration.specialist.Specialist"
                )
            if spec.name in found:
                raise RegistryError(
                    f"two specialists are named {spec.name!r} ({origin[spec.name]} and {module.__name__}); "
                    "names must be unique"
                )
            found[spec.name] = spec
            origin[spec.name] = module.__name__
        if not defined:
            raise RegistryError(
                f"SWITCHBOARD_SPECIALISTS entry {entry!r} defines no specialist: neither it nor its "
                "submodules have a module-level SPECIALIST = Specialist(...)"
            )
    _check(found)
    return found


def _check(found: dict[str, Specialist]) -> None:
    fallbacks = [name for name, spec in found.items() if spec.fallback]
    if len(fallbacks) > 1:
        raise RegistryError(f"specialists {', '.join(fallbacks)} all declare fallback=True; at most one may")
    for first, second in collisions([ROUTER_QUEUE, *found, CALLBACK_QUEUE]):
        raise RegistryError(
            f"specialists {first!r} and {second!r} would share a metrics port (each is derived from "
            f"the name): set SWITCHBOARD_{second.upper()}_METRICS_PORT to a free port"
        )


@lru_cache(maxsize=1)
def specialists() -> dict[str, Specialist]:
    return load(get_settings().specialists)


def get_specialist(name: str) -> Specialist:
    try:
        return specialists()[name]
    except KeyError:
        raise RegistryError(f"unknown specialist {name!r}; known: {', '.join(specialists())}") from None


def fallback_specialist() -> str:
    """Where a request goes when nothing can decide: the setting, else the specialist that declares
    itself the fallback, else the first one found."""
    named = get_settings().fallback_specialist
    if named:
        return get_specialist(named).name
    found = specialists()
    return next((name for name, spec in found.items() if spec.fallback), next(iter(found)))


def match_rules(text: str) -> str | None:
    """The one specialist whose rules match `text`, if exactly one does (no classifier: cheap
    enough for the client, which uses it to know where a request will go)."""
    matched = {
        name for name, spec in specialists().items() if any(r.search(text) for r in spec.compiled_rules)
    }
    # Rules of two specialists matching means the rules cannot decide; the classifier does.
    return matched.pop() if len(matched) == 1 else None
