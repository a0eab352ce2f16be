"""The README's architecture table names the tree as it is: every module in app/ has its row, and
every path the table names exists (a table kept by hand went wrong in three places before)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _table() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("| "))


def _named(table: str) -> set[str]:
    return set(re.findall(r"`([^`\s]+)`", table))


def test_every_module_in_app_is_in_the_architecture_table() -> None:
    named = _named(_table())
    names = {Path(n).name for n in named} | named
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "app").rglob("*.py"))
        if path.name not in {"__init__.py", "__main__.py"}
        and path.name not in names
        and str(path.relative_to(ROOT)) not in names
        # a package named as a whole (`adapters/`) covers its modules
        and not any(
            str(path.parent.relative_to(ROOT)).endswith(n.rstrip("/")) for n in named if n.endswith("/")
        )
    ]
    assert missing == [], f"README's architecture table does not name: {missing}"


def test_every_path_the_table_names_exists() -> None:
    files = {
        str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts
    }
    basenames = {Path(f).name for f in files}
    gone = []
    for name in sorted(_named(_table())):
        if "/" in name:
            # a path from the root, or one inside the row's package (`admission/backlog.py`)
            path = name.rstrip("/")
            if path not in files and not any(f.endswith("/" + path) for f in files):
                gone.append(name)
        elif name.endswith(".py") and name not in basenames:
            gone.append(name)
    assert gone == [], f"README's architecture table names paths that do not exist: {gone}"
