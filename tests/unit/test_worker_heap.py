"""A worker freezes its start-up heap once it is ready (and each prefork child once forked), so a
full collection walks only what requests allocated since."""

from __future__ import annotations

import gc

from celery.signals import worker_process_init, worker_ready

import app.orchestration.celery_app  # noqa: F401 - connects the worker's signal handlers


def test_a_ready_worker_and_a_forked_child_freeze_what_they_hold() -> None:
    for signal in (worker_ready, worker_process_init):
        gc.unfreeze()
        kept = [object() for _ in range(1000)]  # held, as a module's objects are
        assert gc.get_freeze_count() == 0
        signal.send(sender=None)
        try:
            assert gc.get_freeze_count() >= len(kept)
        finally:
            gc.unfreeze()
