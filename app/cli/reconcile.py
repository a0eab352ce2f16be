"""`switchboard reconcile`: one pass of the reconciler (re-publish, re-dispatch, in doubt, overdue approvals)."""

from __future__ import annotations

import argparse

from app.cli.output import emit
from app.orchestration.approvals import escalate_overdue
from app.orchestration.reconciler import mark_in_doubt, redispatch_stale, republish_unpublished


def cmd_reconcile(args: argparse.Namespace) -> int:
    result = {
        "republished": republish_unpublished(min_age_s=args.min_age),
        "redispatched": redispatch_stale(lease_s=args.lease),
        "llm_calls_in_doubt": mark_in_doubt(lease_s=args.lease),
        "approvals_escalated": escalate_overdue(),
    }
    emit(
        args,
        result,
        lambda: print(
            f"republished {result['republished']}, "
            f"re-dispatched {result['redispatched']} request(s), "
            f"{result['llm_calls_in_doubt']} LLM call(s) marked in doubt, "
            f"escalated {result['approvals_escalated']} approval(s)"
        ),
    )
    return 0
