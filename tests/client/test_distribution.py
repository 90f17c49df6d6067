"""The `mcs-client` distribution (client/pyproject.toml) stands alone: built from this repository, installed
into an empty virtual environment (no torch, no compression_core, dependencies from the package index), its
`mcs` command submits a real job to a running service and verifies the artifacts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.live import Live, running_service
from tests.service.svc_helpers import ROOT, SPEC, write_model

pytestmark = pytest.mark.slow  # a venv and a pip install from the package index: about a minute


def _bare_env() -> dict[str, str]:
    """The environment without PYTHONPATH, so nothing of this checkout leaks into the venv's imports."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty venv with the client wheel installed: the wheel built here, its dependencies from the index.
    The venv has no pip of its own (it needs none); this interpreter's pip installs into it."""
    tmp = tmp_path_factory.mktemp("dist")
    source = tmp / "client"  # a copy: the build writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(
        ROOT / "client", source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    wheels = tmp / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            wheels,
            source,
        ],
        check=True,
        env=_bare_env(),
        timeout=300,
    )
    (wheel,) = wheels.glob("mcs_client-*.whl")
    env_dir = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", env_dir], check=True, env=_bare_env(), timeout=300
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", env_dir / "bin" / "python", "install", "-q", wheel],
        check=True,
        env=_bare_env(),
        timeout=600,
    )
    return env_dir


def _run(venv: Path, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], env=_bare_env(), cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_the_venv_has_the_client_and_nothing_of_the_product(venv: Path, tmp_path: Path) -> None:
    probe = _run(
        venv,
        venv / "bin" / "python",
        "-c",
        "import importlib.util as u, json, client; "
        "print(json.dumps({'client': client.__file__, "
        "'absent': [m for m in ('torch', 'compression_core', 'service', 'worker', 'mcs_common', 'celery', "
        "'fastapi', 'sqlalchemy') if u.find_spec(m) is None]}))",
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert Path(found["client"]).is_relative_to(venv)
    assert set(found["absent"]) == {
        "torch",
        "compression_core",
        "service",
        "worker",
        "mcs_common",
        "celery",
        "fastapi",
        "sqlalchemy",
    }


def test_mcs_has_the_client_commands_only(venv: Path, tmp_path: Path) -> None:
    help_ = _run(venv, venv / "bin" / "mcs", "--help", cwd=tmp_path)
    assert help_.returncode == 0, help_.stderr
    for command in ("submit", "jobs", "status", "cancel", "download"):
        assert command in help_.stdout
    assert "serve" not in help_.stdout and "compress " not in help_.stdout
    submit = _run(venv, venv / "bin" / "mcs", "submit", "--help", cwd=tmp_path)
    assert submit.returncode == 0, submit.stderr
    assert "--min-ratio" in submit.stdout and "Exit codes" in submit.stdout


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running_service(tmp_path_factory.mktemp("live")) as service:
        yield service


def test_a_real_submit_gates_and_downloads(venv: Path, live: Live, tmp_path: Path) -> None:
    model = write_model(tmp_path / "in")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    mcs = venv / "bin" / "mcs"
    common = ("--server", live.url, "--token", live.token)
    done = _run(
        venv,
        mcs,
        "submit",
        model,
        "--spec",
        spec,
        *common,
        "--out",
        "out",
        "--min-ratio",
        "1.5",
        "--poll",
        "0.1",
        "--timeout",
        "180",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted job" in done.stdout and "ratio" in done.stdout
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"model.bin", "model.pth", "metrics.json"}
    assert done.stderr.count("verified") >= 3

    job_id = done.stdout.split("submitted job ", 1)[1].split()[0]
    status = _run(venv, mcs, "status", job_id, *common, "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "succeeded"

    missed = _run(
        venv, mcs, "submit", model, "--spec", spec, *common, "--out", "low", "--min-ratio", "1000",
        "--poll", "0.1", "--timeout", "180", cwd=tmp_path,
    )  # fmt: skip
    assert missed.returncode == 6, missed.stdout + missed.stderr  # THRESHOLD_MISSED, computed by the client
    assert "below --min-ratio 1000" in missed.stderr

    refused = _run(venv, mcs, "jobs", "--server", live.url, "--token", "nope", cwd=tmp_path)
    assert refused.returncode == 3 and "401" in refused.stderr
