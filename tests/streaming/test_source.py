"""Tensor sources: what they list, the order they read in, and the inputs they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from compression_core.errors import InputError
from compression_core.streaming.source import TorchFileSource, open_source
from tests.streaming.conftest import INDEX, transformer_like, write_sharded


def test_sharded_index_and_folder_list_every_tensor_in_shard_order(
    sharded: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    index, state = sharded
    for where in (index, index.parent):
        source = open_source(where)
        assert source.sharded and len(source.shards) == 3
        expected = []
        for shard in source.shards:  # load_file's order within each shard
            expected += list(load_file(str(index.parent / shard)))
        assert [info.name for info in source.infos] == expected
        for info in source.infos:
            tensor = source.load(info.name)
            assert tensor.dtype == state[info.name].dtype == info.dtype
            assert torch.equal(tensor, state[info.name])
        source.close()


def test_reading_remaps_after_the_byte_budget(sharded: tuple[Path, dict[str, torch.Tensor]]) -> None:
    index, state = sharded
    source = open_source(index, remap_bytes=1)  # a new mapping for every tensor
    assert all(torch.equal(source.load(n), state[n]) for n in state)


def test_torch_file_is_mapped_and_copied_out(tmp_path: Path) -> None:
    state = transformer_like()
    torch.save(state, tmp_path / "model.pth")
    source = open_source(tmp_path / "model.pth", remap_bytes=1)
    assert isinstance(source, TorchFileSource)
    assert [i.name for i in source.infos] == list(state)
    loaded = source.load("lm_head.weight")
    assert torch.equal(loaded, state["lm_head.weight"]) and loaded.untyped_storage().size() == 64 * 32 * 2


def test_single_safetensors_file(tmp_path: Path) -> None:
    state = transformer_like()
    save_file(state, str(tmp_path / "m.safetensors"))
    source = open_source(tmp_path / "m.safetensors")
    assert not source.sharded and [i.name for i in source.infos] == list(
        load_file(str(tmp_path / "m.safetensors"))
    )


@pytest.mark.parametrize(
    ("shard", "message"),
    [("../model-00001-of-00003.safetensors", "plain"), ("missing.safetensors", "missing")],
)
def test_index_naming_other_files_is_refused(
    sharded: tuple[Path, dict[str, torch.Tensor]], shard: str, message: str
) -> None:
    index, _ = sharded
    doc = json.loads(index.read_text())
    doc["weight_map"]["lm_head.weight"] = shard
    index.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=message):
        open_source(index)


def test_index_and_shards_must_agree(sharded: tuple[Path, dict[str, torch.Tensor]]) -> None:
    index, _ = sharded
    doc = json.loads(index.read_text())
    doc["weight_map"]["ghost.weight"] = "model-00001-of-00003.safetensors"
    index.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="disagree"):
        open_source(index)


def test_folder_without_a_single_checkpoint_is_refused(tmp_path: Path) -> None:
    write_sharded(tmp_path, {"a": torch.ones(2)}, shards=1)
    (tmp_path / f"other{INDEX[5:]}").write_text("{}")
    with pytest.raises(InputError, match="expected one"):
        open_source(tmp_path)


def test_unsupported_dtype_is_named(tmp_path: Path) -> None:
    save_file({"w": torch.ones(3, dtype=torch.float8_e4m3fn)}, str(tmp_path / "f8.safetensors"))
    with pytest.raises(InputError, match="unsupported dtype F8_E4M3"):
        open_source(tmp_path / "f8.safetensors")


def test_load_all_merges_the_shards_in_reading_order(sharded: tuple[Path, dict[str, torch.Tensor]]) -> None:
    from compression_core.streaming.source import load_all

    index, state = sharded
    merged = load_all(index)
    assert list(merged) == [info.name for info in open_source(index).infos]
    assert all(torch.equal(merged[n], state[n]) for n in state)
