"""The preflight (`preflight`, `mcs check`): plans traced on the architecture, refusals named, in seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from compression_core.deploy.preflight import preflight, upload_shapes
from compression_core.errors import InputError
from compression_core.models import build_model
from compression_core.spec import parse_spec

RESNET = {"arch": "resnet18", "kwargs": {"num_classes": 10}, "input_shape": [3, 32, 32]}


def _spec(**fields: object) -> object:
    return parse_spec(json.dumps({"model": RESNET, **fields}))


def _rule(pattern: str, **step: object) -> dict[str, object]:
    return {
        "select": {"name": pattern, "kind": "conv"},
        "steps": [{"type": "structured", "sparsity": 0.5, **step}],
    }


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pre") / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(RESNET).state_dict().items()}, str(path))
    return path


def test_a_residual_plan_that_would_break_an_addition_is_refused_naming_the_layer(resnet_file, one_thread):
    report = preflight(_spec(rules=[_rule("layer1.*", ignore=["conv1"])]), upload_shapes(resnet_file))
    assert report["ok"] is False
    refused = {p["layer"] for p in report["structured"]["refused"]}
    assert refused == {"layer1.0.conv2", "layer1.1.conv2"}
    messages = [e["message"] for e in report["errors"]]
    assert any("'layer1.0.conv2'" in m and "conv1" in m for m in messages)
    assert {e["field"] for e in report["errors"]} == {"spec.rules.0"}
    # the block-internal convolutions are fine: their channels stay inside the block
    assert {p["layer"] for p in report["structured"]["pruned"]} == {"layer1.0.conv1", "layer1.1.conv1"}


def test_a_runnable_plan_lists_pruned_and_int8_layers(resnet_file, one_thread):
    spec = _spec(rules=[_rule("*")], data={"builtin": "digits"}, int8={"exclude": ["layer4.*"]})
    report = preflight(spec, upload_shapes(resnet_file))
    assert report["ok"] is True, report["errors"]
    structured = report["structured"]
    assert structured["params_after"] * 3 < structured["params_before"]
    assert {p["layer"]: p["kept"] for p in structured["pruned"]}["conv1"] == 32
    int8 = report["int8"]
    assert "conv1" in int8["quantized"] and "fc" in int8["quantized"]
    floating = {item["layer"]: item["reason"] for item in int8["float"]}
    assert floating["layer4.0.conv1"] == "excluded by int8.exclude"
    assert report["export"] == ["onnx"]


def test_the_upload_must_fit_the_architecture(tmp_path):
    state = build_model({"arch": "lenet5"}).state_dict()
    state["fc1.weight"] = torch.zeros(500, 801)
    del state["fc2.bias"]
    torch.save(state, tmp_path / "lenet5.pth")
    report = preflight(
        parse_spec(json.dumps({"model": {"arch": "lenet5"}})), upload_shapes(tmp_path / "lenet5.pth")
    )
    assert report["ok"] is False
    messages = [e["message"] for e in report["errors"]]
    assert "missing tensor fc2.bias" in messages
    assert "fc1.weight: the file has shape (500, 801), the architecture (500, 800)" in messages
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(InputError, match="not a readable safetensors"):
        upload_shapes(tmp_path / "broken.safetensors")


def test_mcs_check_exits_2_and_names_the_refused_layer(resnet_file, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": RESNET, "rules": [_rule("layer1.*", ignore=["conv1"])]}))
    done = subprocess.run(
        [sys.executable, "-m", "mcs", "check", str(resnet_file), "--spec", str(spec), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "layer 'layer1.0.conv2'" in done.stderr
    assert json.loads(done.stdout)["structured"]["refused"][0]["layer"].startswith("layer1.")
