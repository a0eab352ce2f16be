"""A workflow's definition: named steps, each with its tier, retries, timeout and the steps it
runs after."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workflows.engine.context import StepContext

StepFn = Callable[["StepContext"], dict[str, Any]]


@dataclass(frozen=True)
class Step:
    name: str
    fn: StepFn
    tier: str = "cheap"
    retries: int = 1
    timeout_s: float = 120.0
    after: tuple[str, ...] = ()
    # A single-shot step's LLM answers depend only on their messages, so they may be cached.
    single_shot: bool = False


@dataclass
class Workflow:
    name: str
    steps: dict[str, Step] = field(default_factory=dict)

    def step(
        self,
        name: str | None = None,
        *,
        tier: str = "cheap",
        retries: int = 1,
        timeout_s: float = 120.0,
        after: tuple[str, ...] = (),
        single_shot: bool = False,
    ) -> Callable[[StepFn], StepFn]:
        def register(fn: StepFn) -> StepFn:
            step_name = name or fn.__name__
            missing = [dep for dep in after if dep not in self.steps]
            if missing:
                raise ValueError(
                    f"workflow {self.name!r}: step {step_name!r} runs after unknown steps {missing}"
                )
            if step_name in self.steps:
                raise ValueError(f"workflow {self.name!r} already has a step named {step_name!r}")
            self.steps[step_name] = Step(step_name, fn, tier, retries, timeout_s, after, single_shot)
            return fn

        return register
