"""A method added from outside the library, through the registry and through an `mcs.methods` entry point:
it appears in the spec's JSON Schema, its rules and fields validate, a job runs it end to end through the
pipeline, and the service accepts its upload role. Nothing else is edited for it."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import pytest
import torch
from fastapi.testclient import TestClient

from compression_core import methods
from compression_core.errors import SpecError
from compression_core.format import decode_state_dict
from compression_core.io import save_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.methods import registry
from compression_core.methods.base import CompressMethod, MethodSpec, Outcome, StepMethod, StepSpec
from compression_core.spec import parse_spec, spec_json_schema


class RoundStep(StepSpec):
    """Round the kept values to a grid of `step` (a toy quantizer)."""

    type: Literal["toyround"] = "toyround"
    after: ClassVar[frozenset[str]] = frozenset({"prune"})
    grid: float = 0.25


def round_apply(step: RoundStep, work, ctx) -> None:
    work.values = torch.round(work.values / step.grid) * step.grid


class ScaleSpec(MethodSpec):
    """Scale every weight by the first value of the uploaded `scale` file before the rules compress."""

    field: ClassVar[str] = "toyscale"
    title: ClassVar[str] = "toy scaling"
    description: ClassVar[str] = "a toy whole-model method"
    needs: ClassVar[tuple[str, ...]] = ("model",)
    excludes: ClassVar[tuple[str, ...]] = ("lc",)
    inputs: ClassVar[tuple[str, ...]] = ("scale",)
    note: str = "toy"


def scale_run(config: ScaleSpec, job, compress) -> Outcome:
    from compression_core.io import load_state_dict

    factor = float(next(iter(load_state_dict(job.inputs["scale"]).values())).reshape(-1)[0])
    scaled = {name: tensor * factor for name, tensor in job.original.items()}
    job.original = scaled
    records, metrics = compress(scaled, job.spec, span=job.span)
    rules = {entry["name"]: entry.get("rule") for entry in metrics["tensors"]}
    return Outcome(
        records=records, rules=rules, training={"algorithm": "toyscale"}, section={"factor": factor}
    )


TOY_METHODS = [StepMethod(spec=RoundStep, apply=round_apply), CompressMethod(spec=ScaleSpec, run=scale_run)]

SPEC = {
    "model": {"arch": "mlp", "kwargs": {"sizes": [4, 3, 2]}},
    "toyscale": {"note": "x"},
    "rules": [
        {"select": {"name": "fc1.weight"}, "steps": [{"type": "prune", "keep": 6}, {"type": "toyround"}]}
    ],
}


@pytest.fixture
def clean_registry() -> Iterator[None]:
    registry.reload()
    yield
    registry.reload()


def _files(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    state = {
        "fc1.weight": torch.randn(3, 4),
        "fc1.bias": torch.randn(3),
        "fc2.weight": torch.randn(2, 3),
        "fc2.bias": torch.randn(2),
    }
    save_state_dict(state, tmp_path / "model.safetensors")
    save_state_dict({"factor": torch.tensor([2.0])}, tmp_path / "scale.safetensors")
    return tmp_path / "model.safetensors", tmp_path / "scale.safetensors"


def _check_toy_job(tmp_path: Path) -> None:
    schema = spec_json_schema()
    assert "toyscale" in schema["properties"] and "RoundStep" in schema["$defs"]
    assert ("prune", "toyround") in methods.allowed_plans()
    assert "scale" in methods.upload_roles()
    assert methods.method_label(SPEC) == "toyscale+prune+toyround"
    with pytest.raises(SpecError, match="toyround"):  # may only follow prune
        parse_spec(json.dumps({"rules": [{"steps": [{"type": "toyround"}, {"type": "prune", "keep": 1}]}]}))
    with pytest.raises(SpecError, match="toyscale: toy scaling needs `model`"):
        parse_spec(json.dumps({"toyscale": {}}))

    model, scale = _files(tmp_path)
    spec = parse_spec(json.dumps(SPEC))
    metrics = compress_file(model, spec, tmp_path / "out", inputs={"scale": scale})
    decoded = decode_state_dict((tmp_path / "out" / "model.bin").read_bytes())
    from compression_core.io import load_state_dict

    original = load_state_dict(model)
    fc1 = decoded["fc1.weight"].reshape(-1)
    kept = torch.argsort((2 * original["fc1.weight"]).reshape(-1).abs(), descending=True, stable=True)[:6]
    expected = torch.round(2 * original["fc1.weight"].reshape(-1)[kept] / 0.25) * 0.25
    assert int(torch.count_nonzero(fc1)) <= 6
    assert torch.equal(torch.sort(fc1[kept]).values, torch.sort(expected).values)
    assert torch.equal(decoded["fc2.weight"], 2 * original["fc2.weight"])  # dense, scaled by the method
    assert metrics["toyscale"] == {"factor": 2.0}
    assert metrics["training"] == {"algorithm": "toyscale"}
    entry = next(e for e in metrics["tensors"] if e["name"] == "fc1.weight")
    assert entry["method"] == "prune+toyround" and entry["kept"] == 6


def _check_service_accepts(tmp_path: Path) -> None:
    from mcs_common.settings import Settings
    from service.app import create_app
    from service.observability import main_method
    from service.uploads import file_parts

    assert "scale" in file_parts()
    assert main_method(SPEC) == "toyscale+prune+toyround"
    tag = uuid.uuid4().hex[:8]
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'mcs.db'}",
        broker_url="redis://127.0.0.1:6379/13",
        queue_cpu=f"mcs-toy-cpu-{tag}",
        queue_gpu=f"mcs-toy-gpu-{tag}",
        reaper_interval_s=0,
        auth="disabled",
    )
    model, scale = _files(tmp_path)
    with TestClient(create_app(settings)) as client:
        files = {
            "model": ("m.safetensors", model.read_bytes()),
            "scale": ("s.safetensors", scale.read_bytes()),
        }
        accepted = client.post("/jobs", files=files, data={"spec": json.dumps(SPEC)})
        assert accepted.status_code == 202, accepted.text
        files = {
            "model": ("m.safetensors", model.read_bytes()),
            "bogus": ("s.safetensors", scale.read_bytes()),
        }
        refused = client.post("/jobs", files=files, data={"spec": json.dumps(SPEC)})
        assert refused.status_code == 422 or refused.status_code == 400, refused.text
        assert "bogus" in refused.text


def test_builtins_without_the_toy(clean_registry):
    assert "toyscale" not in spec_json_schema()["properties"]
    assert methods.upload_roles() == ("model", "data", "teacher")
    assert methods.method_label({"lc": {}, "rules": [{"steps": [{"type": "prune"}]}]}) == "lc+prune"


def test_a_method_registered_at_run_time(clean_registry, tmp_path):
    for method in TOY_METHODS:
        registry.register(method)
    _check_toy_job(tmp_path)
    _check_service_accepts(tmp_path)
    registry.unregister("toyscale")
    assert "toyscale" not in spec_json_schema()["properties"]


def test_a_method_installed_through_an_entry_point(clean_registry, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "mcs_toy_methods-0.1.dist-info").mkdir(parents=True)
    (site / "mcs_toy_methods-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mcs-toy-methods\nVersion: 0.1\n"
    )
    (site / "mcs_toy_methods-0.1.dist-info" / "entry_points.txt").write_text(
        "[mcs.methods]\ntoy = mcs_toy_methods:METHODS\n"
    )
    (site / "mcs_toy_methods.py").write_text(
        textwrap.dedent(
            """
            from tests.methods.test_registry import TOY_METHODS as METHODS
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    assert "toyscale" not in spec_json_schema()["properties"]  # not loaded until the registry reloads
    registry.reload()
    _check_toy_job(tmp_path)
    monkeypatch.delitem(sys.modules, "mcs_toy_methods", raising=False)


def test_simultaneous_first_lookups_all_see_every_builtin_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's threads ask the registry at once: none may see it half-filled (issue 20's CI run)."""
    import importlib
    import threading
    import time

    from compression_core.methods import registry as reg

    monkeypatch.setattr(reg, "_steps", {})
    monkeypatch.setattr(reg, "_methods", {})
    monkeypatch.setattr(reg, "_state", {"loaded": False, "generation": 0})
    real_import = importlib.import_module

    def slow_import(name: str, *args: object) -> object:
        time.sleep(0.02)
        return real_import(name, *args)

    monkeypatch.setattr(reg.importlib, "import_module", slow_import)
    barrier, seen, lock = threading.Barrier(6), [], threading.Lock()

    def look() -> None:
        barrier.wait()
        names = sorted([*reg.step_methods(), *reg.model_methods()])
        with lock:
            seen.append(names)

    threads = [threading.Thread(target=look) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(seen) == 6 and all(names == seen[0] for names in seen)
    assert set(seen[0]) >= set(reg.BUILTINS)
