"""Every exception the engine defines descends from its layer's base in app/errors.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import app
from app import errors
from app.ingress.client import InvalidRequest, Overloaded, Refused

BASES = {
    "app.cli": errors.CliError,
    "app.ops": errors.OpsError,
    "app.ingress": errors.IngressError,
    "app.orchestration": errors.OrchestrationError,
    "app.inference": errors.InferenceError,
    "app.observability": errors.ObservabilityError,
    "app.state": errors.StateError,
    "app.config": errors.ConfigError,
    "app.default_secrets": errors.ConfigError,
    "app.extras": errors.ConfigError,
    "app.request_scope": errors.ConfigError,
}


def _engine_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(app.__path__, "app."):
        # __main__ runs the CLI; the simulator is a test double with no engine layer.
        if info.name.endswith("__main__") or info.name.startswith("app.simulator"):
            continue
        module = importlib.import_module(info.name)
        found += [
            value
            for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name
        ]
    return found


def _layer(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_each_exception_subclasses_its_layers_base() -> None:
    found = _engine_exceptions()
    assert len(found) > 25  # the walk reached every layer
    wrong = [
        f"{kind.__module__}.{kind.__qualname__}"
        for kind in found
        if kind.__module__ != "app.errors" and not issubclass(kind, BASES[_layer(kind.__module__)])
    ]
    assert wrong == []


def test_overloaded_and_invalid_request_are_siblings() -> None:
    assert not issubclass(Overloaded, InvalidRequest) and not issubclass(InvalidRequest, Overloaded)
    assert issubclass(Overloaded, Refused) and issubclass(InvalidRequest, Refused)
    assert issubclass(Refused, errors.IngressError) and issubclass(
        errors.IngressError, errors.SwitchboardError
    )
