"""deploy/k8s: every file parses, the kustomization lists them all, and the pieces reference each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def _docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return _docs()


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]["containers"][0]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_expected_objects(docs: list[dict[str, Any]]) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert kinds == {
        ("Namespace", "mcs"),
        ("ConfigMap", "mcs-config"),
        ("Secret", "mcs-secrets"),
        ("PersistentVolumeClaim", "mcs-data"),
        ("Deployment", "mcs-api"),
        ("Service", "mcs-api"),
        ("Deployment", "mcs-worker-cpu"),
        ("Deployment", "mcs-worker-gpu"),
        ("Deployment", "mcs-flower"),
        ("Service", "mcs-flower"),
        ("StatefulSet", "redis"),
        ("Service", "redis"),
        ("StatefulSet", "postgres"),
        ("Service", "postgres"),
    }
    assert all(d["metadata"].get("namespace") == "mcs" for d in docs if d["kind"] != "Namespace")


def test_commands_and_settings_match_the_compose_file(docs: list[dict[str, Any]]) -> None:
    compose = yaml.safe_load((K8S.parents[1] / "docker-compose.yml").read_text())["services"]
    pairs = {
        "mcs-api": "api",
        "mcs-worker-cpu": "worker-cpu",
        "mcs-worker-gpu": "worker-gpu",
        "mcs-flower": "flower",
    }
    for deployment, service in pairs.items():
        assert _container(_one(docs, "Deployment", deployment))["command"] == compose[service]["command"]
    assert _container(_one(docs, "Deployment", "mcs-worker-gpu"))["command"][2:4] == ["--queues", "gpu"]
    settings = {
        **_one(docs, "ConfigMap", "mcs-config")["data"],
        **_one(docs, "Secret", "mcs-secrets")["stringData"],
    }
    assert set(compose["api"]["environment"]) <= set(settings)
    assert compose["redis"]["command"][:3] == _container(_one(docs, "StatefulSet", "redis"))["command"][:3]


def test_every_mcs_image_is_named_in_the_kustomization(docs: list[dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    named = {i["name"] for i in kustomization["images"]}
    used = {_container(d)["image"] for d in docs if d["kind"] == "Deployment"}
    assert used == named == {"mcs-api", "mcs-worker", "mcs-worker-cuda"}
    for image in named:
        assert (K8S.parent / f"Dockerfile.{image.removeprefix('mcs-')}").is_file()


def test_gpu_worker_asks_for_one_gpu_and_cpu_worker_for_none(docs: list[dict[str, Any]]) -> None:
    gpu = _container(_one(docs, "Deployment", "mcs-worker-gpu"))["resources"]["limits"]
    cpu = _container(_one(docs, "Deployment", "mcs-worker-cpu"))["resources"].get("limits", {})
    assert gpu["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in cpu


def test_shared_data_volume_is_rwx_and_mounted_by_api_and_workers(docs: list[dict[str, Any]]) -> None:
    assert _one(docs, "PersistentVolumeClaim", "mcs-data")["spec"]["accessModes"] == ["ReadWriteMany"]
    config = _one(docs, "ConfigMap", "mcs-config")["data"]
    for name in ("mcs-api", "mcs-worker-cpu", "mcs-worker-gpu"):
        pod = _one(docs, "Deployment", name)["spec"]["template"]["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        mounts = {
            m["name"]: m["mountPath"]
            for m in _container({"spec": {"template": {"spec": pod}}})["volumeMounts"]
        }
        assert claims == {"data": "mcs-data"} and mounts["data"] == config["MCS_DATA_DIR"]


def test_settings_come_from_configmap_and_secret(docs: list[dict[str, Any]]) -> None:
    config = _one(docs, "ConfigMap", "mcs-config")["data"]
    secret = _one(docs, "Secret", "mcs-secrets")["stringData"]
    assert config["MCS_BROKER_URL"].startswith("redis://redis:6379")
    assert (
        secret["MCS_DATABASE_URL"].startswith("postgresql+psycopg://")
        and "@postgres:5432/" in secret["MCS_DATABASE_URL"]
    )
    assert "MCS_API_TOKEN" in secret
    assert all(isinstance(v, str) for v in {**config, **secret}.values())  # env values must be strings
    for name in ("mcs-api", "mcs-worker-cpu", "mcs-worker-gpu"):
        refs = _container(_one(docs, "Deployment", name))["envFrom"]
        assert {"configMapRef": {"name": "mcs-config"}} in refs and {
            "secretRef": {"name": "mcs-secrets"}
        } in refs


def test_redis_persists_with_appendonly_and_postgres_has_storage(docs: list[dict[str, Any]]) -> None:
    redis = _one(docs, "StatefulSet", "redis")
    command = _container(redis)["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert redis["spec"]["volumeClaimTemplates"]
    postgres = _one(docs, "StatefulSet", "postgres")
    env = {e["name"]: e for e in _container(postgres)["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mcs-secrets",
        "key": "POSTGRES_PASSWORD",
    }
    assert postgres["spec"]["volumeClaimTemplates"]


def test_services_select_their_pods(docs: list[dict[str, Any]]) -> None:
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        targets = [
            w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, svc["metadata"]["name"]
        ports = {p["name"] for p in _container(targets[0])["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    for w in workloads:  # a selector must match its own template
        assert (
            w["spec"]["selector"]["matchLabels"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        )


def test_api_probes_use_the_health_endpoints(docs: list[dict[str, Any]]) -> None:
    api = _container(_one(docs, "Deployment", "mcs-api"))
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
