"""model.bin is a pure function of the input and the spec: compressing twice gives the same bytes (timings,
which differ run to run, stay in metrics.json)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from compression_core.job.pipeline import compress_file
from compression_core.spec import Spec

SPEC = {
    "version": 1,
    "rules": [
        {
            "select": {"name": "a.*"},
            "steps": [{"type": "prune", "sparsity": 0.7}, {"type": "quantize", "k": 8}],
        },
        {"select": {"name": "b.*"}, "steps": [{"type": "lowrank", "rank": 3}]},
        {"select": {"name": "c.*"}, "steps": [{"type": "quantize", "k": 4, "init": "linear"}]},
    ],
}


def test_compressing_twice_gives_identical_model_bin(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    state = {name: torch.randn(24, 40, generator=generator) for name in ("a.weight", "b.weight", "c.weight")}
    state["a.bias"] = torch.randn(24, generator=generator)
    model = tmp_path / "m.safetensors"
    save_file(state, str(model))
    spec = Spec.model_validate(SPEC)
    outputs = []
    for run in ("one", "two"):
        compress_file(model, spec, tmp_path / run)
        outputs.append((tmp_path / run / "model.bin").read_bytes())
    assert outputs[0] == outputs[1]
    assert b'"seconds"' not in outputs[0]
    metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert metrics["timing"]["seconds"]  # the timings are still reported, in metrics.json
