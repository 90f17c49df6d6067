"""Soft weight-sharing on an ONNX upload through the pipeline, as on a built-in: the job's model.pth loads
strictly into the user's own class (TinyNet) with the accuracy the job reported, model.onnx gives it in
onnxruntime, and the selected weights hold few distinct values (LC and distillation: through the service,
tests/service/test_service_onnx_methods.py)."""

from __future__ import annotations

import json

import pytest
import torch

from compression_core.deploy.onnx_export import ort_session
from compression_core.job.pipeline import compress_file
from compression_core.spec import parse_spec
from tests.sources.onnx.tiny import TinyNet, accuracy

SWS = {"select": "*.weight", "components": 8, "epochs": 2, "batch_size": 64}
LAYERS = ("stem.weight", "block.0.weight", "block.3.weight", "head.weight")


def test_sws_on_an_onnx_upload_writes_weights_for_the_users_class(tiny, digits, tmp_path, seeded):
    path, _ = tiny
    spec = parse_spec(json.dumps({"model": {"arch": "onnx"}, "data": {"builtin": "digits"}, "sws": SWS}))
    metrics = compress_file(path, spec, tmp_path / "out")
    after = metrics["evaluation"]["after"]
    assert (after["split"], after["n"]) == ("test", 360) and after["top1"] > 0.8
    assert metrics["sws"]["history"] and metrics["totals"]["ratio"] > 4
    weights = torch.load(tmp_path / "out" / "model.pth", weights_only=True)
    mine = TinyNet()
    mine.load_state_dict(weights, strict=True)
    assert all(len(torch.unique(weights[name])) <= SWS["components"] + 1 for name in LAYERS)
    one = 1.5 / after["n"]  # one sample's argmax may flip between runtimes
    assert accuracy(mine, digits) == pytest.approx(after["top1"], abs=one)
    x, y = digits.test.tensors
    session = ort_session(tmp_path / "out" / "model.onnx", 1)
    logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert float((logits.argmax(1) == y.numpy()).mean()) == pytest.approx(after["top1"], abs=one)
    assert [r["name"] for r in metrics["deployment"]["table"]["rows"]][-1] == "model.onnx"
