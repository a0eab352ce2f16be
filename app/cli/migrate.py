"""`switchboard migrate` and `switchboard seed`: the database's schema, then each specialist's own data."""

from __future__ import annotations

import argparse

from app.cli.output import emit
from app.ops.migrate import current, upgrade
from app.ops.preflight import check_database
from app.ops.seeding import seed_enabled


def cmd_migrate(args: argparse.Namespace) -> int:
    check_database()
    created = upgrade()
    # Per history (the engine's, then each enabled specialist's that owns tables): where it is now.
    histories = {name: found["revision"] for name, found in current().items()}
    emit(
        args,
        {"database_created": created, "revision": "head", "histories": histories},
        lambda: print(
            ("database created; " if created else "")
            + "at the latest revision: "
            + ", ".join(f"{name} {rev}" for name, rev in histories.items())
        ),
    )
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    seeded = seed_enabled()
    emit(
        args,
        seeded,
        lambda: print(
            "\n".join(
                f"{name}: " + ", ".join(f"{k}={v}" for k, v in counts.items())
                for name, counts in seeded.items()
            )
            or "no enabled specialist has a seed"
        ),
    )
    return 0
