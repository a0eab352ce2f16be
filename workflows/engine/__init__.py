"""A small engine for multi-step workflows with durable steps.

A workflow is named steps with dependencies. Steps whose dependencies are done run side by side;
each step's output is checkpointed in `step_runs`, so a redelivered task resumes at its first
unfinished step and never pays again for LLM calls a finished step made. Steps do I/O only through
`app.inference` and `app.state`, never by talking to queues.

A step runs in the task's own thread (steps running side by side: all but one in a shared pool).
Its `timeout_s` is a deadline checked before each LLM call: a step past it makes no further call
and fails as timed out (retryable). Each wait inside a step is bounded too: an LLM call by the
provider's HTTP timeout, a statement by the database's statement timeout. Python cannot stop a
thread, so abandoning a step still running would leave it calling the provider, unrecorded, next
to its own retry; a deadline the step obeys cannot.

A step can stop to wait for a person. `ctx.await_approval(...)` parks it: its state (for the agent
loop, the conversation so far and the pending tool call) becomes the step's checkpoint with status
`parked`, written with the LLM calls it paid for, the pending approval and the request's move to
`awaiting_approval` in one transaction; the task then ends, its message acked. Once a person
decides, the task runs again and the step gets that state back as `ctx.parked` and the decision
from `ctx.decision(key)`. `ctx.handoff(reason)` gives the request to the human queue the same way.
"""

from __future__ import annotations

from workflows.engine.checkpoints import CHECKPOINT_PATIENCE_S, Finish, load_checkpoints
from workflows.engine.context import RequestInfo, StepContext
from workflows.engine.errors import AwaitingApproval, HandedOff, StepError, Suspended
from workflows.engine.runner import run
from workflows.engine.workflow import Step, StepFn, StepRef, Workflow

__all__ = [
    "CHECKPOINT_PATIENCE_S",
    "AwaitingApproval",
    "Finish",
    "HandedOff",
    "RequestInfo",
    "Step",
    "StepContext",
    "StepError",
    "StepFn",
    "StepRef",
    "Suspended",
    "Workflow",
    "load_checkpoints",
    "run",
]
