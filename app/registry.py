"""Discovers specialists: every module under the `specialists` package that defines SPECIALIST."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from app.specialist import Specialist


class RegistryError(RuntimeError):
    pass


@lru_cache(maxsize=1)
def specialists() -> dict[str, Specialist]:
    import specialists as package

    found: dict[str, Specialist] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"specialists.{info.name}")
        spec = getattr(module, "SPECIALIST", None)
        if spec is None:
            continue
        if not isinstance(spec, Specialist):
            raise RegistryError(f"specialists/{info.name}.py: SPECIALIST must be an app.specialist.Specialist")
        if spec.name in found:
            raise RegistryError(f"two specialists are named {spec.name!r}; names must be unique")
        found[spec.name] = spec
    if not found:
        raise RegistryError("no specialists found: add a module under specialists/ that defines SPECIALIST")
    return found


def get_specialist(name: str) -> Specialist:
    try:
        return specialists()[name]
    except KeyError:
        raise RegistryError(f"unknown specialist {name!r}; known: {', '.join(specialists())}") from None


def match_rules(text: str) -> str | None:
    """The one specialist whose rules match `text`, if exactly one does (no classifier: cheap
    enough for the client, which uses it to know where a request will go)."""
    matched = {name for name, spec in specialists().items() if any(r.search(text) for r in spec.compiled_rules)}
    # Rules of two specialists matching means the rules cannot decide; the classifier does.
    return matched.pop() if len(matched) == 1 else None
