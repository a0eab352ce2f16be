"""Celery's threads pool, resizable at run time.

Celery's `threads` pool has no `grow`/`shrink`, so `celery control pool_grow` fails on it
("'TaskPool' object has no attribute 'grow'") and `--autoscale` cannot drive it. This subclass adds
both. A resize swaps in a new executor of the new size; tasks already running finish on the old
one, which is shut down without cancelling anything. How many tasks run at once is bounded by the
prefetch count (concurrency x prefetch multiplier 1), which Celery's `pool_grow`/`pool_shrink`
commands update after calling these methods, and by the executor's size.

Workers use it as `-P app.orchestration.thread_pool:TaskPool` (see app/ops/pools.py) wherever the pool
setting says `threads`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery.concurrency.thread import TaskPool as ThreadsPool

CELERY_POOL = "app.orchestration.thread_pool:TaskPool"


class TaskPool(ThreadsPool):
    executor: ThreadPoolExecutor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resize_lock = threading.Lock()
        self._retired: list[ThreadPoolExecutor] = []

    def _resize(self, limit: int) -> None:
        with self._resize_lock:
            old, self.executor = self.executor, ThreadPoolExecutor(max_workers=limit)
            self.limit = limit
            # Running tasks keep their threads until they finish; nothing queued is cancelled.
            old.shutdown(wait=False, cancel_futures=False)
            self._retired.append(old)

    def grow(self, n: int = 1) -> None:
        self._resize(self.limit + n)

    def shrink(self, n: int = 1) -> None:
        if self.limit - n < 1:
            # The autoscaler catches ValueError as "already at the minimum".
            raise ValueError(f"cannot shrink a pool of {self.limit} by {n}: at least 1 thread stays")
        self._resize(self.limit - n)

    def on_stop(self) -> None:
        # Warm shutdown waits for tasks on executors retired by a resize, too.
        for old in self._retired:
            old.shutdown(wait=True)
        super().on_stop()
