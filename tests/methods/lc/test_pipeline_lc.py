from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from compression_core.errors import Cancelled
from compression_core.evaluate import evaluate
from compression_core.format import decode_records, decode_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.models import build_model, load_into
from compression_core.spec import parse_spec

from .conftest import MLP

RULES = [
    {"name": "fc1 pruned", "select": {"name": "fc1.weight"}, "steps": [{"type": "prune", "keep": 200}]},
    {"name": "fc2 low-rank", "select": {"name": "fc2.weight"}, "steps": [{"type": "lowrank", "alpha": 1e-5}]},
]
LC = {
    "mu0": 2e-3,
    "mu_growth": 2.0,
    "steps": 4,
    "eval_every": 2,
    "l_step": {"epochs": 1, "lr": 0.1, "batch_size": 64},
}


@pytest.fixture
def model_path(reference_state, tmp_path):
    path = tmp_path / "mlp.safetensors"
    save_file({k: v.contiguous() for k, v in reference_state.items()}, str(path))
    return path


def _spec(**extra):
    fields = {"rules": RULES, "model": MLP, "data": {"builtin": "digits"}, "lc": LC, **extra}
    return parse_spec(json.dumps(fields))


def test_lc_spec_runs_through_the_pipeline(model_path, digits, tmp_path):
    seen = []
    metrics = compress_file(model_path, _spec(), tmp_path / "out", progress=seen.append)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    lc_messages = [p.message for p in seen if p.stage == "lc"]
    assert len(lc_messages) == 5 and lc_messages[-1].startswith("LC step 4/4")

    lc = metrics["lc"]
    assert [h["step"] for h in lc["history"]] == [0, 1, 2, 3, 4]
    assert [h["validation_error"] is not None for h in lc["history"]] == [True, False, True, False, True]
    assert lc["config"]["steps"] == 4 and lc["mu_last"] == pytest.approx(2e-3 * 8)
    assert lc["direct_compression_error"] == lc["history"][0]["validation_error"]
    assert (lc["split"], lc["n"]) == ("validation", 144)  # per-step errors choose nothing from the test split

    # the artifact: the decoded .bin is model.pth, satisfies the constraints and is what evaluation.after saw
    decoded = decode_state_dict(tmp_path / "out" / "model.bin")
    pth = torch.load(tmp_path / "out" / "model.pth", weights_only=True)
    assert all(torch.equal(decoded[k], pth[k]) for k in decoded)
    records = {r.name: r for r in decode_records((tmp_path / "out" / "model.bin").read_bytes())[0]}
    assert records["fc1.weight"].positions.numel() == 200
    assert int(torch.count_nonzero(decoded["fc1.weight"])) <= 200
    rank = records["fc2.weight"].factors[0].shape[1]
    assert rank == lc["history"][-1]["structure"]["fc2.weight"]["rank"]
    assert records["fc1.bias"].method == "dense"
    after = metrics["evaluation"]["after"]
    model = load_into(build_model(MLP), decoded)
    assert evaluate(model, digits.test, timing=False).error == pytest.approx(after["error"])
    model.eval()
    with torch.no_grad():  # the last step's error is the final model's, on the validation split
        wrong = (model(digits.validation.tensors[0]).argmax(1) != digits.validation.tensors[1]).sum()
    assert lc["final_error"] == pytest.approx(int(wrong) / 144)
    assert after["samples"] == 360 and metrics["evaluation"]["before"]["samples"] == 360
    assert after["split"] == "test" and after["n"] == 360

    # LC counting and the per-tensor rows are there, as for direct compression
    totals = metrics["totals"]
    assert totals["lc_params"] == 200 + rank * (48 + 10) and totals["lc_ratio"] > 1
    assert totals["ratio"] > 1
    rules = {e["name"]: e["rule"] for e in metrics["tensors"]}
    assert rules["fc1.weight"] == "rule #0 (fc1 pruned)" and rules["fc1.bias"] is None
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["lc"]["history"][-1]["mu"] == pytest.approx(lc["mu_last"])


def test_cancel_during_lc(model_path, tmp_path):
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 4

    with pytest.raises(Cancelled):
        compress_file(model_path, _spec(), tmp_path / "out", should_cancel=should_cancel)
    assert not (tmp_path / "out" / "model.bin").exists()


def test_float16_default_applies_to_uncompressed_tensors(model_path, tmp_path):
    compress_file(model_path, _spec(default={"dtype": "float16"}), tmp_path / "out")
    records = {r.name: r for r in decode_records((tmp_path / "out" / "model.bin").read_bytes())[0]}
    assert records["fc1.bias"].method == "dense-fp16"


def test_lc_job_stopped_after_some_steps_resumes_at_the_next_step(model_path, tmp_path):
    """A worker restart: the job's folder keeps the checkpoint, the next attempt continues at step 3 of 4."""
    seen = []

    def stop_after_step_2() -> bool:
        return any(p.stage == "lc" and p.message.startswith("LC step 2/4") for p in seen)

    with pytest.raises(Cancelled):
        compress_file(
            model_path,
            _spec(),
            tmp_path / "attempt1",
            progress=seen.append,
            should_cancel=stop_after_step_2,
            checkpoint_dir=tmp_path / "job",
        )
    again = []
    metrics = compress_file(
        model_path, _spec(), tmp_path / "attempt2", progress=again.append, checkpoint_dir=tmp_path / "job"
    )
    lc_messages = [p.message for p in again if p.stage == "lc"]
    assert lc_messages[0].startswith("LC step 3/4") and lc_messages[-1].startswith("LC step 4/4")
    assert metrics["lc"]["resumed_at_step"] == 3
    assert [h["step"] for h in metrics["lc"]["history"]] == [0, 1, 2, 3, 4]
