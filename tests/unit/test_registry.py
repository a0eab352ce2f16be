"""The specialist registry: SWITCHBOARD_SPECIALISTS, specialist packages, errors, stable metrics ports."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from app.config import Settings
from app.ops.pools import metrics_port_for, procfile
from app.orchestration import metrics_ports
from app.orchestration.registry import RegistryError, fallback_specialist, specialists
from tests.support.outside_specialist import NAME, enabled, write_package

SHIPPING = (
    "from app.orchestration.specialist import Specialist\n"
    "SPECIALIST = Specialist(name='shipping', description='Deliveries and tracking',\n"
    "    system_prompt='You help with deliveries.',\n"
    "    routing_examples=('where is my parcel', 'tracking number does not work',\n"
    "                      'package arrived damaged', 'delivery is late by a week',\n"
    "                      'can I change the shipping address'))\n"
)


@pytest.fixture(autouse=True)
def _no_port_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    # Integration fixtures may have given the session's pools ports of their own.
    for queue in ("router", "billing", "technical", "callbacks", "shipping", NAME):
        monkeypatch.delenv(f"SWITCHBOARD_{queue.upper()}_METRICS_PORT", raising=False)


def test_a_package_outside_the_repository_is_a_specialist_with_one_setting(tmp_path: Path) -> None:
    from app.orchestration.classifier import classifier
    from app.orchestration.topology import all_queues

    with enabled(f"specialists,{NAME}", write_package(tmp_path)):
        found = specialists()
        assert list(found) == ["billing", "technical", NAME]
        acme = found[NAME]
        # Prompt, routing examples and migrations come from the files beside its code.
        assert acme.system_prompt.startswith("You answer Acme's rocket-skate customers.")
        assert (
            acme.routing_examples[0] == "my rocket skates will not ignite" and len(acme.routing_examples) == 7
        )
        assert acme.migrations == tmp_path / NAME / "migrations"
        assert [t.name for t in acme.tools] == ["order_status"] and acme.seed is not None
        assert {NAME, f"{NAME}.dlq"} <= {q.name for q in all_queues()}
        assert acme.task_name == f"switchboard.specialist.{NAME}"
        assert re.search(
            rf"\n{NAME}: SWITCHBOARD_PROCESS_NAME={NAME} SWITCHBOARD_SPECIALISTS="
            rf"\$\{{SWITCHBOARD_SPECIALISTS:-specialists,{NAME}\}} .* worker -Q {NAME} ",
            procfile(),
        )
        assert classifier().predict("the left skate's booster will not ignite").specialist == NAME


def test_only_the_teams_own_specialist(tmp_path: Path) -> None:
    from app.orchestration.classifier import classifier
    from app.orchestration.routing import decide
    from app.orchestration.topology import work_queue_names

    with enabled(NAME, write_package(tmp_path)):
        assert list(specialists()) == [NAME]
        assert work_queue_names() == ["router", NAME, "callbacks"]
        assert "billing" not in procfile() and "technical" not in procfile()
        # One specialist: nothing to classify between, and it is the fallback.
        assert classifier().predict("anything at all").specialist == NAME
        assert fallback_specialist() == NAME
        assert decide("hello?", use_llm=False).specialist == NAME


def test_a_module_entry_and_a_package_entry_listed_twice(tmp_path: Path) -> None:
    (tmp_path / "shipping_team.py").write_text(SHIPPING)
    with enabled("specialists.billing,shipping_team,specialists", tmp_path):
        assert list(specialists()) == ["billing", "shipping", "technical"]


@pytest.mark.parametrize(
    ("files", "entries", "message"),
    [
        ({}, "no_such_team", r"entry 'no_such_team' cannot be imported: ModuleNotFoundError"),
        (
            {"broken_team.py": "import not_installed_dependency\n"},
            "broken_team",
            (
                r"entry 'broken_team' cannot be imported: ModuleNotFoundError: "
                r"No module named 'not_installed_dependency'"
            ),
        ),
        (
            {"broken_pkg/__init__.py": "", "broken_pkg/one.py": "1 / 0\n"},
            "broken_pkg",
            r"entry 'broken_pkg' cannot be imported \(while importing 'broken_pkg.one'\): ZeroDivisionError",
        ),
        (
            {"odd_team.py": "SPECIALIST = {'name': 'odd'}\n"},
            "odd_team",
            r"odd_team.SPECIALIST is a dict; it must be an app.orchestration.specialist.Specialist",
        ),
        ({"empty_team.py": "X = 1\n"}, "empty_team", r"entry 'empty_team' defines no specialist"),
        (
            {"shipping_a.py": SHIPPING, "shipping_b.py": SHIPPING},
            "shipping_a,shipping_b",
            r"two specialists are named 'shipping' \(shipping_a and shipping_b\)",
        ),
        (
            {"router_team.py": SHIPPING.replace("'shipping'", "'router'")},
            "router_team",
            r"specialist name 'router' is taken by the engine's own queue",
        ),
    ],
)
def test_a_bad_entry_is_refused_naming_it(
    tmp_path: Path, files: dict[str, str], entries: str, message: str
) -> None:
    for relative, body in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(body)
    with enabled(entries, tmp_path), pytest.raises(RegistryError, match=message):
        specialists()


def test_an_empty_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="name at least one module or package"):
        Settings(specialists=" , ")


def test_a_missing_prompt_file_names_the_package_and_file(tmp_path: Path) -> None:
    files = {
        "__init__.py": "from app.orchestration.specialist import Specialist\n"
        "SPECIALIST = Specialist.from_package(__name__, name='bare', description='d', prompt='missing.md')\n"
    }
    write_package(tmp_path, "bare_team", files)
    with (
        enabled("bare_team", tmp_path),
        pytest.raises(RegistryError, match=r"package 'bare_team' has no file 'missing.md'"),
    ):
        specialists()


# --- Metrics ports ------------------------------------------------------------------------------


def _ports() -> dict[str, int]:
    from app.orchestration.topology import work_queue_names

    settings = Settings(metrics_base_port=9700)
    return {queue: metrics_port_for(queue, settings) for queue in work_queue_names()}


def test_each_pool_gets_a_port_derived_from_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = _ports()
    assert ports["router"] == 9700 and ports["callbacks"] == 9701
    assert len(set(ports.values())) == len(ports)
    assert all(9700 <= port < 9700 + metrics_ports.SLOTS for port in ports.values())
    assert ports["billing"] == 9700 + metrics_ports.slot("billing")
    monkeypatch.setenv("SWITCHBOARD_BILLING_METRICS_PORT", "9999")
    assert metrics_port_for("billing", Settings()) == 9999
    assert metrics_port_for("router", Settings(metrics_base_port=0)) == 0


def test_adding_or_removing_a_specialist_moves_no_other_pools_port(tmp_path: Path) -> None:
    # "aardvark" sorts before every other pool: by position it would have renumbered them all.
    (tmp_path / "aardvark_team.py").write_text(SHIPPING.replace("'shipping'", "'aardvark'"))
    before = _ports()
    with enabled("aardvark_team,specialists", tmp_path):
        during = _ports()
    with enabled("specialists.billing", tmp_path):
        without_technical = _ports()
    assert set(during) == {*before, "aardvark"}
    assert {q: p for q, p in during.items() if q != "aardvark"} == before
    assert without_technical == {q: p for q, p in before.items() if q != "technical"}


def test_two_specialists_sharing_a_derived_port_are_caught_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = (f"team{i}" for i in itertools.count())
    seen: dict[int, str] = {}
    while True:
        name = next(names)
        if (other := seen.setdefault(metrics_ports.slot(name), name)) != name:
            break
    for team in (other, name):
        (tmp_path / f"{team}_mod.py").write_text(SHIPPING.replace("'shipping'", f"'{team}'"))
    entries = f"{other}_mod,{name}_mod"
    with (
        enabled(entries, tmp_path),
        pytest.raises(
            RegistryError,
            match=rf"'{other}' and '{name}' would share a "
            rf"metrics port .* set SWITCHBOARD_{name.upper()}_METRICS_PORT",
        ),
    ):
        specialists()
    monkeypatch.setenv(f"SWITCHBOARD_{name.upper()}_METRICS_PORT", "9999")
    with enabled(entries, tmp_path):
        assert set(specialists()) == {other, name}


# --- Fallback and the classifier extra -----------------------------------------------------------


def test_the_fallback_is_the_declared_one_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    with enabled("specialists"):
        assert fallback_specialist() == "technical"
    monkeypatch.setenv("SWITCHBOARD_FALLBACK_SPECIALIST", "nobody")
    with enabled("specialists"), pytest.raises(RegistryError, match="unknown specialist 'nobody'"):
        fallback_specialist()


def test_without_scikit_learn_routing_falls_back_to_rules_and_llm(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from app.orchestration import classifier
    from app.orchestration.routing import decide

    def missing() -> object:
        raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")

    monkeypatch.setattr(classifier, "_pipeline", missing)
    with enabled("specialists"):
        with caplog.at_level("WARNING", logger="app.orchestration.classifier"):
            assert decide("INV-2231 was charged twice", use_llm=False).method == "rule"
            # A rule decides before the classifier is needed; the first request it is needed for says so.
            unsure = decide("my invoice looks wrong", use_llm=False)
        assert caplog.text.count("pip install 'switchboard[classifier]'") == 1
        assert (unsure.specialist, unsure.method) == ("technical", "fallback")
