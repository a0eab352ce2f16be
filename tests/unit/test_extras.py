"""The core install runs a worker; each optional part says which extra brings it.

Each check runs in a fresh interpreter in which the extras' packages cannot be imported, as on a
machine with `pip install switchboard` and nothing more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = sorted({name for names in EXTRAS.values() for name in names} | {"honcho", "werkzeug"})
# Installed into the interpreter before anything else runs: the extras' packages are not there.
BLOCKER = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Absent())
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in {BLOCKED!r} else _find(name, *a)
"""


def _core_only(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
        check=False,
    )


def test_the_core_dependencies_leave_out_every_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in (
        "flask",
        "gunicorn",
        "flower",
        "scikit-learn",
        "starlette",
        "uvicorn",
        "tqdm",
        "honcho",
        "pyyaml",
    ):
        assert name not in core
    extras = project["optional-dependencies"]
    assert set(EXTRAS) <= set(extras) and extras["all"] == ["switchboard[api,flower,classifier,demo,deploy,redis]"]
    assert "switchboard[all]" in extras["test"]


def test_a_worker_loads_and_routes_with_the_core_install_only() -> None:
    result = _core_only(
        "import json, logging\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "import app.orchestration.tasks, app.ingress.client, app.orchestration.celery_app, app.ops.pools, workflows\n"
        "from app.orchestration.routing import decide\n"
        "from app.ops.pools import procfile\n"
        "print(json.dumps([decide('Refund INV-1042 please', use_llm=False).method,\n"
        "                  decide('it is broken somehow', use_llm=False).method,\n"
        "                  'billing:' in procfile()]))\n"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["rule", "fallback", True]
    assert (
        "scikit-learn is not installed" in result.stderr
        and "pip install 'switchboard[classifier]'" in result.stderr
    )


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["api"], "api"),
        (["flower"], "flower"),
        (["manifests"], "deploy"),
        (["simulator"], "demo"),
        (["demo"], "demo"),
    ],
)
def test_a_command_that_needs_an_extra_says_which(argv: list[str], extra: str) -> None:
    result = _core_only(f"import sys\nfrom app.cli import main\nsys.exit(main({argv!r}))\n")
    assert result.returncode == 2, result.stderr
    assert f"pip install 'switchboard[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_simulator_module_itself_names_its_extra() -> None:
    result = _core_only("import app.simulator\n")
    assert result.returncode == 1 and "MissingExtra" in result.stderr
    assert (
        "the simulated provider (app.simulator) needs" in result.stderr
        and "switchboard[demo]" in result.stderr
    )
