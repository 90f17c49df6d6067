"""`mcs check` reads an upload the way the API does: the metadata checks first (a stride-0 view is refused
from its header, not made dense), and a sharded checkpoint through its index (issue 21, items 8 and 9)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from typer.testing import CliRunner

from mcs.app import app
from tests.reliability.hostile import stride_zero_view_pth
from tests.reliability.memory import peak_mib, reset_peak

from .conftest import lenet5_state_dict

runner = CliRunner()


def test_mcs_check_refuses_a_stride_zero_view_before_making_it_dense(tmp_path: Path) -> None:
    view = tmp_path / "view.pth"
    view.write_bytes(stride_zero_view_pth())  # ~1 kB; (16384, 16384) float32 once contiguous: 1 GiB
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": {"arch": "lenet5"}}))
    before = reset_peak()
    result = runner.invoke(app, ["check", str(view), "--spec", str(spec)])
    growth = peak_mib() - before
    print(f"mcs check of a {view.stat().st_size}-byte stride-0 view: peak RSS growth {growth:.1f} MiB")
    assert result.exit_code == 2, result.output
    assert "stride 0" in result.output, result.output
    assert growth < 100, growth


def test_mcs_check_reads_a_sharded_checkpoint(tmp_path: Path) -> None:
    state = lenet5_state_dict()
    names = sorted(state)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    weight_map = {}
    for i, part in enumerate((names[:4], names[4:])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, str(folder / shard))
        weight_map.update(dict.fromkeys(part, shard))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": {"arch": "lenet5"}}))
    for target in (index, folder):
        result = runner.invoke(app, ["check", str(target), "--spec", str(spec), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["ok"] is True
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"model": {"arch": "lenet300"}}))
    result = runner.invoke(app, ["check", str(folder), "--spec", str(wrong)])
    assert result.exit_code == 2 and "fc1.weight" in result.output, result.output


def test_mcs_check_makes_the_checks_post_jobs_makes_first(tmp_path: Path) -> None:
    """Issue 19: an unknown architecture, and data whose samples do not fit the model, exit 2 naming the
    field, before any plan is traced."""
    import numpy as np

    model = tmp_path / "lenet5.safetensors"
    save_file(lenet5_state_dict(), str(model))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": {"arch": "GarmentNet"}}))
    result = runner.invoke(app, ["check", str(model), "--spec", str(spec)])
    assert result.exit_code == 2 and "spec.model.arch" in result.output and "GarmentNet" in result.output
    spec.write_text(json.dumps({"model": {"arch": "lenet5"}, "data": {"upload": True}}))
    data = tmp_path / "data.npz"
    np.savez(data, x_train=np.zeros((4, 28, 28, 3), np.float32), y_train=np.arange(4))
    result = runner.invoke(app, ["check", str(model), "--spec", str(spec), "--data", str(data)])
    assert result.exit_code == 2 and "refused: data" in result.output, result.output


def test_mcs_check_plans_an_onnx_student_and_its_onnx_teacher(tmp_path: Path) -> None:
    """An ONNX upload builds its own module (no architecture name to look up), the teacher's too once
    `--teacher` names its file; without it, 'onnx' is refused naming the teacher field."""
    import torch

    from tests.sources.onnx.tiny import TinyNet, export

    graph = export(TinyNet(), torch.zeros(1, 64), tmp_path / "tiny.onnx")
    spec = tmp_path / "spec.json"
    onnx = {"arch": "onnx"}
    spec.write_text(json.dumps({"model": onnx, "data": {"builtin": "digits"}, "distill": {"teacher": onnx}}))
    result = runner.invoke(app, ["check", str(graph), "--spec", str(spec), "--teacher", str(graph), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["ok"] is True and report["plan"]["stages"], report
    result = runner.invoke(app, ["check", str(graph), "--spec", str(spec)])
    assert result.exit_code == 2, result.output
    assert "spec.distill.teacher.arch: 'onnx' names an uploaded ONNX graph" in result.output, result.output


def test_mcs_check_converts_an_onnx_upload_once(tmp_path: Path, monkeypatch) -> None:
    """docs/bring-your-own-model.md tried as a user: `mcs check` converted the graph twice (the preflight
    reopened the upload), so it printed the unmapped-names warning twice and paid the conversion and its
    onnxruntime check twice. The preflight now traces the source the command already has open."""
    import torch

    import compression_core.sources.onnx.convert as convert
    from tests.sources.onnx.tiny import TinyNet, export

    graph = export(TinyNet(), torch.zeros(1, 64), tmp_path / "tiny.onnx")
    spec = tmp_path / "spec.json"
    rules = [{"select": {"name": "*", "kind": "conv"}, "steps": [{"type": "structured", "sparsity": 0.5}]}]
    spec.write_text(json.dumps({"model": {"arch": "onnx"}, "data": {"builtin": "digits"}, "rules": rules}))
    calls = []
    original = convert.convert_graph
    monkeypatch.setattr(convert, "convert_graph", lambda *a, **k: calls.append(1) or original(*a, **k))
    result = runner.invoke(app, ["check", str(graph), "--spec", str(spec), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True
    assert len(calls) == 1
