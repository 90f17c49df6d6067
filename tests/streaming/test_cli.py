"""`mcs compress` on a sharded checkpoint: the index file or its folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from compression_core.format import decode_state_dict
from mcs.app import app

runner = CliRunner()


@pytest.mark.parametrize("by_folder", [False, True])
def test_compress_reads_the_shards_and_writes_them_back(
    sharded: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, by_folder: bool
) -> None:
    index, state = sharded
    spec = tmp_path / "spec.json"
    rule = {"select": {"name": "*proj.weight"}, "steps": [{"type": "prune", "sparsity": 0.5}]}
    spec.write_text(json.dumps({"rules": [rule]}))
    out = tmp_path / "out"
    where = index.parent if by_folder else index
    result = runner.invoke(
        app, ["compress", str(where), "--spec", str(spec), "-o", str(out), "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "model.layers.2.mlp.up_proj.weight" in result.output
    decoded = decode_state_dict(out / "model.bin")
    for shard in sorted(index.parent.glob("model-*.safetensors")):
        written = load_file(str(out / shard.name))
        assert set(written) == set(load_file(str(shard)))
        assert all(
            torch.equal(written[n], decoded[n]) and written[n].dtype == state[n].dtype for n in written
        )
    assert json.loads((out / index.name).read_text()) == json.loads(index.read_text())


def test_a_folder_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["compress", str(tmp_path), "--spec", "resnet-prune90-k16", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "expected one" in result.output
