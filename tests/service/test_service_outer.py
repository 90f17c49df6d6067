"""A registered outer method fans out over the workers with no worker or service edit: a toy method,
installed through the `mcs.methods` entry point (as an operator would), that runs the rest of the spec
twice as child jobs, through a real API and a real Celery worker process; and the same method run by the
library, one child after another."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import make_settings
from fastapi.testclient import TestClient
from svc_helpers import WorkerProcess, wait_for

from compression_core.io import save_state_dict
from compression_core.methods import registry
from service.app import create_app

TOY = textwrap.dedent(
    '''
    """An outer method that exists only in this test: run the rest of the spec `times` times."""
    import json
    import shutil
    from typing import ClassVar

    from pydantic import Field

    from compression_core.methods.base import MethodSpec
    from compression_core.methods.outer import ChildPlan, OuterDriver, OuterMethod, Round


    class RepeatSpec(MethodSpec):
        field: ClassVar[str] = "toyrepeat"
        title: ClassVar[str] = "repeat"
        needs: ClassVar[tuple[str, ...]] = ()
        times: int = Field(default=2, ge=1, le=4)


    class RepeatDriver(OuterDriver):
        def plan(self, children, slots, model_path):
            if children:
                return Round([], "every copy ran", len(children))
            base = {k: v for k, v in self.spec.items() if k != "toyrepeat"}
            times = range(self.config.times)
            copies = [ChildPlan(base, {"parameters": {}, "label": f"copy {i}"}) for i in times]
            return Round(copies, "all copies at once", self.config.times)

        def progress(self, children, total):
            done = sum(c.state in ("succeeded", "failed", "cancelled") for c in children)
            return done / max(1, total), f"{done}/{total} copies"

        def finish(self, children, child_dir, out_dir, *, trace, note):
            out_dir.mkdir(parents=True, exist_ok=True)
            for name in ("model.bin", "model.pth"):
                shutil.copyfile(child_dir(0) / name, out_dir / name)
            metrics = json.loads((child_dir(0) / "metrics.json").read_text())
            metrics["toyrepeat"] = {
                "ratios": [c.metrics["totals"]["ratio"] for c in children],
                "labels": [c.record["label"] for c in children],
                "trace": list(trace),
                "note": note,
            }
            (out_dir / "metrics.json").write_text(json.dumps(metrics))
            return metrics

        def run_child(self, model_path, spec, out_dir, *, record, **options):
            from compression_core.job.pipeline import compress_file

            return compress_file(model_path, spec, out_dir, **options)


    METHOD = OuterMethod(spec=RepeatSpec, driver=RepeatDriver)
    '''
)
SPEC = {
    "rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.5}]}],
    "toyrepeat": {"times": 2},
}


@pytest.fixture
def toy_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The toy as an operator installs it: a distribution declaring an `mcs.methods` entry point, on the
    path of this process and of the worker's."""
    site = tmp_path / "site"
    info = site / "mcs_toy_outer-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mcs-toy-outer\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mcs.methods]\ntoyrepeat = mcs_toy_outer:METHOD\n")
    (site / "mcs_toy_outer.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the worker process's path (settings_env keeps it)
    registry.reload()
    yield site
    monkeypatch.delitem(sys.modules, "mcs_toy_outer", raising=False)
    monkeypatch.undo()
    registry.reload()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    save_state_dict({"fc.weight": torch.randn(16, 16), "fc.bias": torch.randn(16)}, path)
    return path


def test_the_library_runs_an_outer_method_one_child_after_another(toy_installed, model_file, tmp_path):
    from compression_core.job.pipeline import compress_file
    from compression_core.spec import parse_spec

    metrics = compress_file(model_file, parse_spec(json.dumps(SPEC)), tmp_path / "out")
    section = metrics["toyrepeat"]
    assert section["labels"] == ["copy 0", "copy 1"] and len(section["ratios"]) == 2
    assert section["trace"] == [{"round": 1, "trials": [0, 1], "note": "all copies at once"}]
    assert section["note"] == "every copy ran"
    assert (tmp_path / "out" / "model.bin").is_file() and not (tmp_path / "out" / "trials").exists()


def test_a_registered_outer_method_fans_out_over_the_workers(
    toy_installed, model_file, tmp_path, redis_url, session_tag
):
    settings = make_settings(
        tmp_path / "data", f"sqlite:///{tmp_path / 'mcs.db'}", redis_url, f"toy-{session_tag}"
    )
    with TestClient(create_app(settings)) as client:
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        try:
            worker.wait_ready()
            response = client.post(
                "/jobs",
                files={"model": (model_file.name, model_file.read_bytes())},
                data={"spec": json.dumps(SPEC)},
            )
            assert response.status_code == 202, response.text
            job = wait_for(client, response.json()["id"], timeout=240)
        finally:
            worker.stop()
    assert job["state"] == "succeeded", (job.get("error"), (tmp_path / "worker.log").read_text()[-3000:])
    children = job["children"]
    assert [c["state"] for c in children] == ["succeeded", "succeeded"]
    assert [c["label"] for c in children] == ["copy 0", "copy 1"]
    section = job["metrics"]["toyrepeat"]
    assert section["trace"] == [{"round": 1, "trials": [0, 1], "note": "all copies at once"}]
    assert section["ratios"] == [c["ratio"] for c in children]
    assert {"model.bin", "metrics.json"} <= {a["name"] for a in job["artifacts"]}
    assert job["progress"]["message"] == "2 children"
