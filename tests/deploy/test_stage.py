"""The deployment stage through the real pipeline: ResNet-18 pruned to half its channels (data-free, random
weights) and LeNet-5 on mnist-5k with int8. Speed is measured in benchmarks/bench_deploy.py, not here."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import save_file

from compression_core import load_model
from compression_core.channels import count_parameters
from compression_core.data import load_builtin
from compression_core.deploy.onnx_export import ort_session
from compression_core.errors import InputError
from compression_core.format import decode_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.models import build_model
from compression_core.spec import parse_spec

RESNET = {"arch": "resnet18", "kwargs": {"num_classes": 10}, "input_shape": [3, 64, 64]}


def _save(model: torch.nn.Module, path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


@pytest.fixture(scope="module")
def resnet_job(tmp_path_factory, one_thread):
    tmp = tmp_path_factory.mktemp("resnet")
    torch.manual_seed(0)
    _save(build_model(RESNET), tmp / "resnet18.safetensors")
    rules = [{"select": {"name": "*", "kind": "conv"}, "steps": [{"type": "structured", "sparsity": 0.5}]}]
    spec = parse_spec(json.dumps({"model": RESNET, "rules": rules}))
    metrics = compress_file(tmp / "resnet18.safetensors", spec, tmp / "out")
    return tmp / "out", metrics


def test_resnet18_half_channels_is_three_times_smaller_and_load_model_equals_onnx(resnet_job):
    out, metrics = resnet_job
    assert {p.name for p in out.iterdir()} >= {"model.pth", "model.bin", "architecture.json", "model.onnx"}
    model = load_model(out)
    before = count_parameters(build_model(RESNET))
    assert count_parameters(model) * 3 <= before
    assert metrics["structured"]["params_after"] == count_parameters(model)
    assert metrics["structured"]["params_before"] == before
    # model.pth holds the smaller tensors, and decoding model.bin gives exactly them
    decoded = decode_state_dict(out / "model.bin")
    pth = torch.load(out / "model.pth", weights_only=True)
    assert pth.keys() == decoded.keys() and all(torch.equal(pth[k], decoded[k]) for k in pth)
    assert pth["conv1.weight"].shape == (32, 3, 7, 7) and pth["fc.weight"].shape == (10, 256)
    # load_model and the exported ONNX agree on a random batch within 1e-4 relative
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort_session(out / "model.onnx", threads=1)
    got = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    assert metrics["deployment"]["onnx_check"]["ok"] is True


def test_resnet18_deployment_table_lists_each_artifact_in_each_runtime(resnet_job):
    out, metrics = resnet_job
    table = metrics["deployment"]["table"]
    names = [(r["name"], r["runtime"]) for r in table["rows"]]
    assert names == [
        ("original", "pytorch"),
        ("original (ONNX)", "onnxruntime"),
        ("model.pth", "pytorch"),
        ("model.onnx", "onnxruntime"),
    ]
    rows = {r["name"]: r for r in table["rows"]}
    assert rows["model.onnx"]["file_bytes"] == (out / "model.onnx").stat().st_size
    assert rows["model.onnx"]["file_bytes"] * 3 < rows["original (ONNX)"]["file_bytes"]
    for row in table["rows"]:
        for key in ("batch1", "throughput"):
            lat = row["latency"][key]
            assert 0 < lat["p50_ms"] <= lat["p90_ms"]
            assert lat["p50_ms_per_sample"] == pytest.approx(lat["p50_ms"] / lat["batch"])
        assert row["latency"]["throughput"]["batch"] == 32 and "errors" not in row  # no data: no errors
        assert row["memory_method"].startswith("rss_peak_delta") and row["peak_memory_bytes"] >= 0
    assert table["threads"]["pytorch_intra_op"] == table["threads"]["onnxruntime_intra_op"] == 1
    written = json.loads((out / "metrics.json").read_text())
    assert written["deployment"]["table"]["rows"][0]["params"] == rows["original"]["params"]


def test_ratio_and_sizes_compare_with_the_upload_not_the_pruned_model(resnet_job, tmp_path):
    """Half the channels of every conv leave ResNet-18 about 4x smaller: the headline says so (issue 20)."""
    from client.cli import check_thresholds
    from client.headline import headline as client_headline
    from compression_core.report.headline import headline as report_headline

    out, metrics = resnet_job
    totals, structured = metrics["totals"], metrics["structured"]
    shrink = structured["params_before"] / structured["params_after"]
    assert shrink > 3.5
    upload = build_model(RESNET).state_dict()  # parameters and buffers, as the upload held them
    assert totals["original_params"] == sum(t.numel() for t in upload.values())
    assert totals["original_bits"] == sum(t.numel() * t.element_size() * 8 for t in upload.values())
    assert totals["params"] == sum(t.numel() for t in load_model(out).state_dict().values())
    # every tensor is stored dense, so the file shrank by the parameter count (headers cost a little)
    assert 0.95 * shrink <= totals["ratio"] <= shrink
    assert totals["lc_ratio"] > 3.5
    written = json.loads((out / "metrics.json").read_text())
    for h in (client_headline(written), report_headline(written)):
        assert h.ratio == pytest.approx(totals["ratio"])
        assert h.size_before_bytes == totals["original_bits"] / 8
        assert h.params_total == totals["original_params"]
    assert check_thresholds(written, 2.0, None) == []  # `mcs submit --min-ratio 2` passes
    assert check_thresholds(written, 5.0, None) != []


def test_architecture_json_is_checked_before_anything_is_built(resnet_job, tmp_path):
    out, _ = resnet_job
    record = json.loads((out / "architecture.json").read_text())
    assert record["format"] == "mcs-architecture" and record["model"]["input_shape"] == [3, 64, 64]
    assert record["pruning"]["history"] and record["pruning"]["library"].startswith("torch-pruning")
    (tmp_path / "model.bin").write_bytes((out / "model.bin").read_bytes())  # only the compact file
    (tmp_path / "architecture.json").write_text(json.dumps(record))
    from_bin = load_model(tmp_path)
    assert torch.equal(from_bin.conv1.weight, load_model(out).conv1.weight)
    (tmp_path / "model.bin").unlink()
    (tmp_path / "model.pth").write_bytes((out / "model.pth").read_bytes())
    for broken, message in (
        ({**record, "version": 2}, "version 2 is not supported"),
        ({**record, "weights": "../model.pth"}, "file name in the same folder"),
        ({**record, "model": {**record["model"], "input_shape": ["x"]}}, "malformed"),
        ({**record, "pruning": {"history": [["fc", True, [0, 99999]]]}}, "do not fit"),
    ):
        (tmp_path / "architecture.json").write_text(json.dumps(broken))
        with pytest.raises(InputError, match=message):
            load_model(tmp_path)
    (tmp_path / "architecture.json").unlink()
    with pytest.raises(InputError, match="no architecture.json"):
        load_model(tmp_path)


def test_lenet5_int8_is_small_and_as_accurate(tmp_path, one_thread):
    data = load_builtin("mnist-5k")
    torch.manual_seed(0)
    model = build_model({"arch": "lenet5"})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data.train.tensors
    for _ in range(2):  # a brief training: about 7% error on the 1,000 test digits
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            batch = order[i : i + 64]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    _save(model, tmp_path / "lenet5.safetensors")
    spec = {
        "model": {"arch": "lenet5"},
        "data": {"builtin": "mnist-5k"},
        "int8": {"calibration_samples": 256},
    }
    metrics = compress_file(tmp_path / "lenet5.safetensors", parse_spec(json.dumps(spec)), tmp_path / "out")
    out = tmp_path / "out"
    int8 = onnx.load(str(out / "model.int8.onnx"))
    int8_weights = [i.name for i in int8.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 4  # conv1, conv2, fc1, fc2
    assert metrics["deployment"]["int8"]["quantized"] == ["conv1", "conv2", "fc1", "fc2"]
    assert metrics["deployment"]["int8"]["float"] == []
    assert (out / "model.int8.onnx").stat().st_size <= 0.3 * (out / "model.onnx").stat().st_size
    rows = {r["name"]: r for r in metrics["deployment"]["table"]["rows"]}
    fp32, q8 = rows["model.onnx"]["errors"], rows["model.int8.onnx"]["errors"]
    assert fp32["samples"] == q8["samples"] == 1000
    assert fp32["top1_error"] < 0.15  # the model learned something, so the comparison means something
    # within 0.5 points, counted in samples (5 of 1,000; floats make 5 samples 0.0050000000000000044)
    assert round(abs(q8["top1_error"] - fp32["top1_error"]) * 1000) <= 5
    assert metrics["evaluation"]["after"]["error"] == pytest.approx(rows["model.pth"]["errors"]["top1_error"])


def test_a_default_export_that_fails_leaves_the_job_and_says_why(tmp_path, monkeypatch, one_thread):
    import compression_core.deploy.onnx_export as onnx_export
    from compression_core.errors import CompressionError

    def refuse(*args, **kwargs):
        raise CompressionError("ONNX export failed: an operator the exporter does not know")

    monkeypatch.setattr(onnx_export, "export_onnx", refuse)
    _save(build_model({"arch": "lenet300"}), tmp_path / "m.safetensors")
    spec = parse_spec(json.dumps({"model": {"arch": "lenet300"}}))
    metrics = compress_file(tmp_path / "m.safetensors", spec, tmp_path / "out")
    assert metrics["deployment"]["exported"] == []
    assert "does not know" in metrics["deployment"]["onnx_error"]
    assert (
        not (tmp_path / "out" / "model.onnx").exists() and (tmp_path / "out" / "architecture.json").exists()
    )
    asked = parse_spec(json.dumps({"model": {"arch": "lenet300"}, "export": ["onnx"]}))
    with pytest.raises(CompressionError, match="does not know"):
        compress_file(tmp_path / "m.safetensors", asked, tmp_path / "out2")
