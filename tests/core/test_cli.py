import json

import pytest
import torch
from typer.testing import CliRunner

from compression_core.format import decode_state_dict
from compression_core.io import load_state_dict, save_state_dict
from mcs.app import app

from .conftest import lenet5_state_dict

runner = CliRunner()


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "lenet5.pth"
    save_state_dict(lenet5_state_dict(), path)
    return path


def test_compress_decode_inspect(tmp_path, model_file):
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["compress", str(model_file), "--spec", "lc-lenet5-prune-conv-quantize-linear", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "conv2.weight" in result.output and "LC-style ratio" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["totals"]["lc_params"] == 407_613

    result = runner.invoke(app, ["decode", str(out / "model.bin"), "-o", str(tmp_path / "dec.safetensors")])
    assert result.exit_code == 0, result.output
    decoded = load_state_dict(tmp_path / "dec.safetensors")
    pth = load_state_dict(out / "model.pth")
    assert all(torch.equal(decoded[n], pth[n]) and decoded[n].dtype == pth[n].dtype for n in pth)

    result = runner.invoke(app, ["inspect", str(out / "model.bin")])
    assert result.exit_code == 0, result.output
    for word in ("fc1.weight", "quantize", "prune", "500x800", "2,505"):
        assert word in result.output


def test_compress_with_a_spec_file(tmp_path, model_file):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"rules": [{"select": {"kind": "linear"}, "steps": [{"type": "lowrank", "rank": 4}]}]})
    )
    result = runner.invoke(
        app, ["compress", str(model_file), "-s", str(spec), "-o", str(tmp_path / "o"), "-q"]
    )
    assert result.exit_code == 0, result.output
    decoded = decode_state_dict(tmp_path / "o" / "model.bin")
    assert int(torch.linalg.matrix_rank(decoded["fc1.weight"])) == 4


def test_errors_are_one_line_with_exit_code_2(tmp_path, model_file):
    bad_spec = tmp_path / "bad.json"
    bad_spec.write_text(json.dumps({"rules": [{"steps": [{"type": "quantize", "k": 1}]}]}))
    result = runner.invoke(app, ["compress", str(model_file), "-s", str(bad_spec), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "rules.0.steps.0.quantize.k" in result.output and "Traceback" not in result.output

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk" * 50)
    result = runner.invoke(
        app, ["compress", str(junk), "-s", "resnet-prune90-k16", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "junk.pth" in result.output

    result = runner.invoke(app, ["inspect", str(model_file)])
    assert result.exit_code == 2 and "Traceback" not in result.output

    result = runner.invoke(app, ["decode", str(tmp_path / "missing.bin"), "-o", str(tmp_path / "x.pth")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_check_prints_the_plan_and_gives_it_as_json(tmp_path, model_file):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "keep": 9}]}]})
    )
    result = runner.invoke(app, ["check", str(model_file), "--spec", str(spec)])
    assert result.exit_code == 0, result.output
    assert "lenet5.pth (state_dict): streamed on cpu" in result.output
    result = runner.invoke(app, ["check", str(model_file), "--spec", str(spec), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)["plan"]
    assert plan["mode"] == "streamed" and plan["stages"] == [
        {"stage": "compress", "runs": ["prune"], "note": "per tensor, streamed"}
    ]


def test_an_unknown_extension_names_every_input_mcs_compress_takes(tmp_path):
    """docs/bring-your-own-model.md tried as a user: `mcs compress model.pt2` said "expected .safetensors,
    .pth, .pt or .bin" although `.ckpt` and `.onnx` graphs are inputs too."""
    pt2 = tmp_path / "model.pt2"
    pt2.write_bytes(b"PK\x03\x04")
    result = runner.invoke(app, ["compress", str(pt2), "-s", "resnet-prune90-k16", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown extension .pt2" in result.output
    assert ".ckpt" in result.output and "ONNX graph (.onnx)" in result.output
