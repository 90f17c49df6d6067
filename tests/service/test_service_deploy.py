"""The deployment files and the Celery configuration say what the service needs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from svc_helpers import ROOT

from mcs_common.broker import TASK_ADVANCE_SEARCH, TASK_RUN_JOB, make_celery
from mcs_common.settings import Settings


def test_compose_has_the_services_and_the_right_wiring() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "worker-cpu", "worker-gpu", "flower", "redis", "postgres"}
    assert services["api"]["command"][:2] == ["mcs", "serve"] and "--no-worker" in services["api"]["command"]
    assert services["worker-cpu"]["command"][:4] == ["mcs", "worker", "--queues", "cpu"]
    assert services["worker-gpu"]["command"][:4] == ["mcs", "worker", "--queues", "gpu"]
    device = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    for name in ("api", "worker-cpu", "worker-gpu"):
        env = services[name]["environment"]
        assert env["MCS_BROKER_URL"].startswith("redis://redis:6379")
        assert env["MCS_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "mcs-data:/data" in services[name]["volumes"] and env["MCS_DATA_DIR"] == "/data"
        dockerfile = ROOT / services[name]["build"]["dockerfile"]
        assert dockerfile.is_file()
    assert set(compose["volumes"]) >= {"mcs-data", "redis-data", "postgres-data"}


def test_compose_runs_flower_on_the_redis_broker() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    flower = services["flower"]
    assert flower["command"][:4] == ["celery", "-A", "worker.app", "flower"]
    assert "--port=5555" in flower["command"] and flower["ports"] == ["127.0.0.1:5555:5555"]
    assert flower["environment"]["MCS_BROKER_URL"] == services["api"]["environment"]["MCS_BROKER_URL"]
    assert "redis" in flower["depends_on"]
    dockerfile = (ROOT / flower["build"]["dockerfile"]).read_text()
    assert "cluster" in dockerfile  # the image installs the optional [cluster] extra (flower)
    assert "flower" in (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]


def test_dockerfiles_run_the_tested_commands() -> None:
    for name, command in [
        ("Dockerfile.api", '["mcs", "serve", "--no-worker"]'),
        ("Dockerfile.worker", '["mcs", "worker", "--queues", "cpu"'),
        ("Dockerfile.worker-cuda", '["mcs", "worker", "--queues", "gpu"'),
    ]:
        text = (ROOT / "deploy" / name).read_text()
        assert re.search(r"^CMD " + re.escape(command), text, re.M), name
        assert "USER mcs" in text


def test_dockerfiles_copy_every_package_the_product_installs() -> None:
    """`pip install .` in the image finds only the folders copied in; `mcs` imports all of them."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    for name in ("Dockerfile.api", "Dockerfile.worker", "Dockerfile.worker-cuda"):
        copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "deploy" / name).read_text(), re.M))
        assert copied >= packages, (name, packages - copied)


def test_celery_is_json_only_with_late_acks_and_time_limits(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/13", hard_time_limit_s=100)
    app = make_celery(settings, include=("worker.tasks",))  # as worker.app makes it
    app.loader.import_default_modules()
    assert {name for name in app.tasks if not name.startswith("celery.")} == {
        TASK_RUN_JOB,
        TASK_ADVANCE_SEARCH,
    }
    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 100 and conf.task_soft_time_limit == settings.soft_time_limit_s
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    routes = {q.name: (q.exchange.name, q.routing_key) for q in conf.task_queues}
    assert routes == {"cpu": ("cpu", "cpu"), "gpu": ("gpu", "gpu")}


def test_embedded_celery_uses_folders_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.embedded and settings.effective_database_url == f"sqlite:///{tmp_path / 'mcs.db'}"
    options = make_celery(settings).conf.broker_transport_options
    assert options["data_folder_in"] == options["data_folder_out"] == str(tmp_path / "broker" / "messages")
