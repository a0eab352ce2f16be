"""Each pool's Prometheus port, derived from its queue's name, never from its place in the registry.

A specialist added or removed moves no other pool's port, so dashboards and scrape configs keep
pointing at the right process. The router and the callbacks pool keep fixed slots (the router at
the base port, as before); a specialist's slot is a stable hash of its name. Two specialists
hashing to one slot is caught when the registry loads (`collisions`), and either pool's
SWITCHBOARD_<QUEUE>_METRICS_PORT settles it.
"""

from __future__ import annotations

import hashlib
import os

from app.orchestration.specialist import CALLBACK_QUEUE, ROUTER_QUEUE

# First processes of the pools use base .. base+SLOTS-1; a pool's extra processes (`scale` under
# `workers up`) serve SLOTS higher each, so they never land on another pool's first port.
SLOTS = 1000
FIXED_SLOTS = {ROUTER_QUEUE: 0, CALLBACK_QUEUE: 1}


def slot(queue: str) -> int:
    if queue in FIXED_SLOTS:
        return FIXED_SLOTS[queue]
    # sha256, not hash(): the same in every process and on every machine.
    digest = int.from_bytes(hashlib.sha256(queue.encode()).digest()[:8], "big")
    return len(FIXED_SLOTS) + digest % (SLOTS - len(FIXED_SLOTS))


def override(queue: str) -> int | None:
    value = os.environ.get(f"SWITCHBOARD_{queue.upper()}_METRICS_PORT")
    return int(value) if value else None


def default_port(queue: str, base: int, index: int = 0) -> int:
    """The port of a pool's `index`th process when nothing overrides it (0: metrics off)."""
    return 0 if base <= 0 else base + slot(queue) + SLOTS * index


def collisions(queues: list[str]) -> list[tuple[str, str]]:
    """Pairs of pools that would share a derived port (pools with an override left out)."""
    taken: dict[int, str] = {}
    found = []
    for queue in queues:
        if override(queue) is not None:
            continue
        other = taken.setdefault(slot(queue), queue)
        if other != queue:
            found.append((other, queue))
    return found
