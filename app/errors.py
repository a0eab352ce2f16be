"""The root of every Switchboard exception and one base per layer.

Each exception lives beside the code that raises it (its fields and message are that code's) and
subclasses its layer's base here, so a caller can catch one layer's refusals without importing the
layer, and `except SwitchboardError` separates the engine's own errors from bugs. An exception that
also is a `ValueError` or `LookupError` keeps that built-in base, so callers that catch the
built-in keep working. Which status each answers over HTTP is decided in one place only:
app/ingress/http/errors.py.
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Raised by Switchboard on purpose: the message says what happened and what to do."""


class ConfigError(SwitchboardError):
    """The installation or its settings cannot do what was asked (app/config.py, app/extras.py,
    app/default_secrets.py): an operator must act, retrying cannot help."""


class StateError(SwitchboardError):
    """The record refuses: no such row, or not in the status the action needs (app/state/)."""


class ObservabilityError(SwitchboardError):
    """Metrics, logs, traces or reports cannot be produced as asked (app/observability/)."""


class InferenceError(SwitchboardError):
    """An LLM call was not made or did not answer usefully (app/inference/)."""


class OrchestrationError(SwitchboardError):
    """Routing, the specialist registry, topology, tools, callbacks (app/orchestration/)."""


class IngressError(SwitchboardError):
    """A request or a tenant's call was refused at the way in (app/ingress/)."""


class OpsError(SwitchboardError):
    """An operator's command cannot be done as asked (app/ops/)."""


class CliError(SwitchboardError):
    """A `switchboard` command failed in a way its user can act on (app/cli/)."""
