"""docker/: the Kubernetes manifests and the compose file validate against their published schemas
(vendored in tests/data/schemas; `scripts/vendor-schemas` refreshes them), every pool has its
Deployment, KEDA scaler and HPA, secrets are only referenced, and the committed files are current."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from app.ops import compose, manifests
from app.orchestration.topology import pool_queues, work_queue_names

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "data" / "schemas"
KUBERNETES = SCHEMAS / "kubernetes-v1.33.0"
KEDA = SCHEMAS / "keda-v2.16.1"
SCHEMA_OF = {
    ("v1", "ConfigMap"): KUBERNETES / "configmap-v1.json",
    ("v1", "Service"): KUBERNETES / "service-v1.json",
    ("apps/v1", "Deployment"): KUBERNETES / "deployment-apps-v1.json",
    ("batch/v1", "Job"): KUBERNETES / "job-batch-v1.json",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): KUBERNETES / "horizontalpodautoscaler-autoscaling-v2.json",
    ("keda.sh/v1alpha1", "ScaledObject"): KEDA / "scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): KEDA / "triggerauthentication.json",
}


@cache
def validator(path: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(path.read_text())
    definitions = json.loads((KUBERNETES / "_definitions.json").read_text())
    registry: Registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=registry)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in SCHEMA_OF:
        return [f"no vendored schema for {key}: add it to scripts/vendor-schemas and SCHEMA_OF"]
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(SCHEMA_OF[key]).iter_errors(doc)]


def committed() -> dict[Path, list[dict[str, Any]]]:
    root = ROOT / manifests.K8S_DIR
    return {p.relative_to(root): list(yaml.safe_load_all(p.read_text())) for p in sorted(root.glob("*/*.yaml"))}


def test_committed_manifests_are_generated_from_the_specialists() -> None:
    root = ROOT / manifests.K8S_DIR
    on_disk = {p.relative_to(root): p.read_text() for p in root.glob("*/*.yaml")}
    assert on_disk == manifests.render(), "run `switchboard manifests --write` after changing specialists/"
    assert (ROOT / compose.COMPOSE_FILE).read_text() == compose.render(), "run `switchboard manifests --write`"


def test_manifests_command_prints_one_stream_for_kubectl(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["manifests"]) == 0
    printed = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert printed == [doc for found in committed().values() for doc in found]


def test_every_manifest_validates_against_its_published_schema() -> None:
    docs = [(path, doc) for path, found in committed().items() for doc in found]
    assert len(docs) >= 3 * len(work_queue_names()) + 5
    problems = {f"{path} {doc['kind']}": errors for path, doc in docs if (errors := schema_errors(doc))}
    assert problems == {}


@pytest.mark.parametrize(
    ("path", "mistake", "expected"),
    [
        ("base/billing.yaml", lambda d: d["spec"].update(replica=2), "'replica' was unexpected"),
        ("base/billing.yaml", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image=7),
         "7 is not of type"),
        ("keda/billing.yaml", lambda d: d["spec"]["triggers"][0]["metadata"].update(value=26), "26 is not of type"),
        ("keda/billing.yaml", lambda d: d["spec"].pop("scaleTargetRef"), "'scaleTargetRef' is a required property"),
        ("hpa/billing.yaml", lambda d: d["spec"].update(maxReplicas="ten"), "'ten' is not of type"),
    ],
)
def test_the_schemas_catch_mistakes(path: str, mistake: Any, expected: str) -> None:
    doc = copy.deepcopy(committed()[Path(path)][0])
    assert schema_errors(doc) == []
    mistake(doc)
    assert any(expected in e for e in schema_errors(doc)), schema_errors(doc)


def _pool_files(files: dict[Path, list[dict[str, Any]]], queue: str) -> tuple[dict, dict, dict]:
    (deployment,) = files[Path(f"base/{queue}.yaml")]
    (scaler,) = files[Path(f"keda/{queue}.yaml")]
    (hpa,) = files[Path(f"hpa/{queue}.yaml")]
    return deployment, scaler, hpa


def assert_pool_is_deployed_and_scaled(files: dict[Path, list[dict[str, Any]]], queue: str) -> None:
    deployment, scaler, hpa = _pool_files(files, queue)
    assert deployment["kind"] == "Deployment" and "replicas" not in deployment["spec"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    consumed = command[command.index("-Q") + 1].split(",")
    assert consumed == ([queue, "submit"] if queue == "router" else [queue])
    name = deployment["metadata"]["name"]
    assert scaler["kind"] == "ScaledObject" and scaler["spec"]["scaleTargetRef"]["name"] == name
    # One trigger per consumed queue; counting unacked messages needs the management API:
    # protocol http, unacked not excluded.
    assert [t["metadata"]["queueName"] for t in scaler["spec"]["triggers"]] == consumed
    trigger = scaler["spec"]["triggers"][0]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"] | {"value": None} == {
        "protocol": "http", "mode": "QueueLength", "queueName": queue, "excludeUnacknowledged": "false",
        "value": None,
    }
    assert trigger["authenticationRef"]["name"] == manifests.TRIGGER_AUTH
    threads = int(command[command.index("-c") + 1])
    assert int(trigger["metadata"]["value"]) == threads + manifests.PENDING_PER_POD
    assert hpa["kind"] == "HorizontalPodAutoscaler" and hpa["spec"]["scaleTargetRef"]["name"] == name
    assert [m["external"]["metric"]["selector"]["matchLabels"] for m in hpa["spec"]["metrics"]] == [
        {"queue": q} for q in consumed]


def test_every_pool_has_its_deployment_and_scalers() -> None:
    files = committed()
    for queue in work_queue_names():
        assert_pool_is_deployed_and_scaled(files, queue)
    pools = {p.stem for p in files if p.parent.name == "keda"} - {"trigger-authentication"}
    assert pools == set(work_queue_names())


def test_secrets_are_referenced_never_inlined() -> None:
    text = "".join(p.read_text() for p in (ROOT / manifests.K8S_DIR).glob("*/*.yaml"))
    assert not re.search(r"sk-|password|guest|://\w+:\w+@", text, re.IGNORECASE)
    # Compose takes credentials from the environment (a developer's local defaults at most); the
    # engine's own secrets are passed through (no value: unset stays unset), never defaulted.
    for service in compose_file()["services"].values():
        for name, value in service.get("environment", {}).items():
            if re.search(r"PASS|AUTH|KEY", name):
                assert value is None or value.startswith("${"), f"{name} is inlined"
            inlined = value is not None and re.search(r"://[^$]*:[^$]*@", value)
            assert not inlined, f"{name} has an inlined credential"
    services = compose_file()["services"]
    for name in ("api", "callbacks"):
        assert services[name]["environment"]["SWITCHBOARD_SIGNING_KEY"] is None
    assert services["billing"]["environment"]["SWITCHBOARD_PROVIDER_API_KEYS"] is None
    docs = [doc for found in committed().values() for doc in found]
    assert not [d for d in docs if d["kind"] == "Secret"]
    for doc in docs:
        containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        for env in (e for c in containers for e in c.get("env", [])):
            if env["name"] in manifests.SECRET_KEYS:
                assert "value" not in env and env["valueFrom"]["secretKeyRef"]["name"] == manifests.SECRET


def test_a_new_specialist_file_adds_its_deployment_and_scalers(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import specialists
    from app.orchestration import registry

    (tmp_path / "shipping_desk.py").write_text(
        "from app.orchestration.specialist import Specialist\n"
        "SPECIALIST = Specialist(name='shipping_desk', description='Deliveries and tracking',\n"
        "    system_prompt='You help with deliveries.', concurrency=4,\n"
        "    routing_examples=('where is my parcel', 'tracking number does not work', 'package arrived damaged',\n"
        "                      'delivery is late by a week', 'can I change the shipping address'))\n"
    )
    monkeypatch.setattr(specialists, "__path__", [*specialists.__path__, str(tmp_path)])
    registry.specialists.cache_clear()
    try:
        files = manifests.documents()
        assert_pool_is_deployed_and_scaled(files, "shipping_desk")
        for path in ("base/shipping_desk.yaml", "keda/shipping_desk.yaml", "hpa/shipping_desk.yaml"):
            (doc,) = files[Path(path)]
            assert doc["metadata"]["name"] == "switchboard-shipping-desk"  # a valid Kubernetes name
            assert schema_errors(doc) == []
        assert "shipping-desk" in compose.services()
        written, removed = manifests.write(tmp_path / "k8s")
        assert Path("keda/shipping_desk.yaml") in written and removed == []
    finally:
        monkeypatch.undo()
        registry.specialists.cache_clear()
    # The specialist is gone again: its generated files go, a hand-written file stays.
    (tmp_path / "k8s" / "keda" / "mine.yaml").write_text("kind: Mine\n")
    written, removed = manifests.write(tmp_path / "k8s")
    assert set(removed) == {Path(f"{d}/shipping_desk.yaml") for d in ("base", "keda", "hpa")}
    assert written == [] and (tmp_path / "k8s" / "keda" / "mine.yaml").exists()


def compose_file() -> dict[str, Any]:
    return yaml.safe_load((ROOT / compose.COMPOSE_FILE).read_text())


def compose_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    # The schema names its draft as "http://json-schema.org/draft/2019-09/schema#", a spelling
    # jsonschema does not look up, so the draft is named here.
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_validates_against_the_compose_spec() -> None:
    doc = compose_file()
    assert compose_errors(doc) == []
    doc["services"]["billing"]["stop_grace"] = "1s"
    assert any("'stop_grace' does not match" in e for e in compose_errors(doc))


def test_compose_runs_the_whole_stack() -> None:
    services = compose_file()["services"]
    assert "management" in services["rabbitmq"]["image"]
    assert {"postgres", "migrate", "simulator", "beat", "flower", *work_queue_names()} <= set(services)
    assert services["migrate"]["restart"] == "no"
    assert "switchboard migrate && switchboard seed" in services["migrate"]["command"]
    for queue in work_queue_names():
        worker = services[queue]
        assert worker["command"][worker["command"].index("-Q") + 1] == ",".join(pool_queues(queue))
        assert worker["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    flower = services["flower"]["environment"]
    assert flower["SWITCHBOARD_FLOWER_BASIC_AUTH"] == "${SWITCHBOARD_FLOWER_BASIC_AUTH:-}"
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))


def test_dockerfile_runs_as_a_non_root_user_and_copies_what_exists() -> None:
    lines = [line.strip() for line in (ROOT / "docker" / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] == str(manifests.UID)
    for line in (line for line in lines if line.startswith("COPY ")):
        for source in line.split()[1:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"


def test_no_generated_file_ships_a_development_secret_or_dev_mode() -> None:
    from app.config import Settings

    defaults = Settings.model_fields
    development = [defaults["signing_key"].default.get_secret_value(),
                   *(k.get_secret_value() for k in defaults["provider_api_keys"].default)]
    texts = {p.name: p.read_text() for p in (ROOT / manifests.K8S_DIR).glob("*/*.yaml")}
    texts["compose.yaml"] = (ROOT / compose.COMPOSE_FILE).read_text()
    texts["Procfile"] = (ROOT / "Procfile").read_text()
    assert not [(name, value) for name, text in texts.items() for value in development if value in text]
    # Dev mode is never switched on by a generated file; compose passes the operator's choice through.
    settings = {name: "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
                for name, text in texts.items()}
    assert not [name for name, text in settings.items() if re.search(r"SWITCHBOARD_DEV\b.*(true|1)", text)]
    assert all(s["environment"].get("SWITCHBOARD_DEV") is None for s in compose_file()["services"].values())


def test_worker_pods_serve_metrics_on_their_own_address_for_prometheus() -> None:
    files = committed()
    for queue in work_queue_names():
        (deployment,) = files[Path(f"base/{queue}.yaml")]
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        port = env["SWITCHBOARD_METRICS_PORT"]
        # The engine's default is loopback; a pod must listen on its address to be scraped.
        assert env["SWITCHBOARD_METRICS_ADDRESS"] == "0.0.0.0" and int(port) > 0
        assert {"name": "metrics", "containerPort": int(port)} in container["ports"]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == port
