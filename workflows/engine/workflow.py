"""A workflow's definition: named steps, each with its tier, retries, timeout and the steps it
runs after.

`@flow.step(...)` registers a function and returns its `Step`; later steps name the steps they
follow by that object (`after=(understand, retrieve)`), and read their outputs with
`ctx.output(understand)`, so a renamed or missing step is an error where the flow is defined, not a
string that never matches. A step's name (the function's, or `name=`) is what the record keeps
(`step_runs.step`). Names as strings still work for flows written before (`after=("understand",)`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    # The names of the steps this one runs after (resolved from the references it was given).
    after: tuple[str, ...] = ()
    # A single-shot step's LLM answers depend only on their messages, so they may be cached.
    single_shot: bool = False
    # A step that only reads (no LLM call, no `ctx.write`, no effect outside the database's reads):
    # when it succeeds, its checkpoint goes with the next one its task writes instead of costing a
    # statement of its own. A crash in between loses nothing but the reads, which run again.
    reads_only: bool = False

    def __call__(self, ctx: StepContext) -> dict[str, Any]:
        return self.fn(ctx)


# How a step names another: its Step (what `@flow.step` returns), its function, or its name.
StepRef = Step | StepFn | str


def step_name(ref: StepRef) -> str:
    """The name a reference stands for (for a bare function: the name it was registered under by
    default)."""
    if isinstance(ref, Step):
        return ref.name
    if isinstance(ref, str):
        return ref
    return getattr(ref, "__name__", repr(ref))


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
        after: Sequence[StepRef] = (),
        single_shot: bool = False,
        reads_only: bool = False,
    ) -> Callable[[StepFn], Step]:
        def register(fn: StepFn) -> Step:
            new_name = name or fn.__name__
            resolved = [self._resolve(dep) for dep in after]
            missing = [step_name(dep) for dep, found in zip(after, resolved, strict=True) if found is None]
            if missing:
                raise ValueError(
                    f"workflow {self.name!r}: step {new_name!r} runs after unknown steps {missing}"
                )
            if new_name in self.steps:
                raise ValueError(f"workflow {self.name!r} already has a step named {new_name!r}")
            deps = tuple(found for found in resolved if found is not None)
            step = Step(new_name, fn, tier, retries, timeout_s, deps, single_shot, reads_only)
            self.steps[new_name] = step
            return step

        return register

    def _resolve(self, ref: StepRef) -> str | None:
        """The name of this workflow's step `ref` refers to, or None when it has no such step (a
        step of another workflow is not one of this one's, even under the same name)."""
        if isinstance(ref, str):
            return ref if ref in self.steps else None
        for known in self.steps.values():
            if known is ref or known.fn is ref:
                return known.name
        return None
