"""Model sources: which kind an input is, what each reads and writes, and the one-line registration a new
kind needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from compression_core import sources
from compression_core.errors import InputError
from compression_core.io import load_state_dict, save_state_dict
from compression_core.models import build_model
from compression_core.sources import ModelSource, SourceKind, open_source
from compression_core.spec import ModelSpec
from tests.streaming.conftest import transformer_like, write_sharded

LENET5 = ModelSpec(arch="lenet5")


@pytest.fixture
def lenet5_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = build_model({"arch": "lenet5"}).state_dict()
    path = tmp_path / "lenet5.safetensors"
    save_state_dict(state, path)
    return path, state


def test_each_input_is_claimed_by_its_kind(tmp_path, lenet5_file):
    path, _ = lenet5_file
    index = write_sharded(tmp_path / "ckpt", transformer_like(), shards=2)
    assert open_source(path).kind == "state_dict"
    assert open_source(tmp_path / "model.pth").kind == "state_dict"  # a missing file: its reader says so
    assert open_source(index).kind == "sharded"
    assert open_source(index.parent).kind == "sharded"
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "model.pth").state_dict()


def test_a_state_dict_source_reads_metadata_then_tensors_and_builds_the_named_module(lenet5_file):
    path, state = lenet5_file
    with open_source(path, LENET5) as source:
        infos = {info.name: info for info in source.infos}
        assert infos["conv2.weight"].shape == (50, 20, 5, 5) and infos["conv2.weight"].dtype == torch.float32
        assert torch.equal(source.load("fc1.weight"), state["fc1.weight"])
        assert list(source.state_dict()) == list(load_state_dict(path))
        assert source.has_module and source.input_signature() == (1, 28, 28)
        module = source.module()
        assert module is not None and torch.equal(module.state_dict()["fc2.bias"], state["fc2.bias"])
        assert source.input_files() == [path] and source.input_bytes() == path.stat().st_size
    bare = open_source(path)
    assert not bare.has_module and bare.module() is None and bare.input_signature() is None
    shaped = open_source(path, ModelSpec(arch="lenet5", input_shape=[1, 32, 32]))
    assert shaped.input_signature() == (1, 32, 32)


def test_a_module_that_does_not_fit_the_weights_is_refused_naming_the_keys(lenet5_file):
    path, _ = lenet5_file
    with pytest.raises(InputError, match="missing keys: fc3.bias, fc3.weight; unexpected keys: conv1.bias"):
        open_source(path, ModelSpec(arch="lenet300")).module()


def test_a_state_dict_writes_model_pth(tmp_path, lenet5_file):
    path, state = lenet5_file
    written = open_source(path).write(tmp_path / "out", state)
    assert written == [tmp_path / "out" / "model.pth"]
    assert all(torch.equal(load_state_dict(written[0])[k], v) for k, v in state.items())


def test_a_sharded_source_lists_its_shards_and_writes_them_in_the_input_layout(tmp_path):
    state = transformer_like()
    index = write_sharded(tmp_path / "ckpt", state, shards=3)
    source = open_source(index.parent)
    assert source.label == index.name
    assert [p.name for p in source.input_files()] == [
        f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)
    ]
    assert source.input_bytes() == sum(p.stat().st_size for p in source.input_files())
    assert set(source.shapes()) == set(state)
    loaded = source.state_dict()
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in state.items())
    writer = source.dense_writer(tmp_path / "out")
    for name, tensor in loaded.items():
        writer.write(name, tensor)
    paths = writer.finish()
    assert sorted(p.name for p in paths) == sorted([*[p.name for p in source.input_files()], index.name])
    for shard in source.input_files():  # same bytes: the same tensors in the same layout
        assert (tmp_path / "out" / shard.name).read_bytes() == shard.read_bytes()
    source.close()
    assert torch.equal(source.load("lm_head.weight"), state["lm_head.weight"])  # reopens after close


class _Npz(ModelSource):
    """A kind that exists only in this test: arrays in an .npz (reading it is all it needs)."""

    kind = "npz-test"
    streamable = False

    @property
    def infos(self):
        from compression_core.sources import TensorInfo

        return [TensorInfo(k, tuple(v.shape), v.dtype, self.path.name) for k, v in self._tensors().items()]

    def _tensors(self) -> dict[str, torch.Tensor]:
        import numpy as np

        with np.load(self.path) as arrays:
            return {k: torch.from_numpy(arrays[k].copy()) for k in arrays.files}

    def load(self, name):
        return self._tensors()[name]

    def write(self, out_dir, state_dict):
        import numpy as np

        target = Path(out_dir) / "model.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez(target, **{k: v.numpy() for k, v in state_dict.items()})
        return [target]


def test_a_registered_kind_plugs_in_and_runs_a_job(tmp_path):
    """One `register` call: the kind is claimed before the state-dict fallback and a data-free job runs on
    it, in memory (it is not streamable), writing its own dense form."""
    import numpy as np

    from compression_core.job.pipeline import compress_file
    from compression_core.spec import parse_spec

    path = tmp_path / "weights.npz"
    np.savez(path, w=np.linspace(-1, 1, 4096, dtype=np.float32).reshape(64, 64))
    sources.register(SourceKind("npz-test", _Npz, lambda p, m: p.suffix == ".npz", priority=5))
    try:
        assert open_source(path).kind == "npz-test"
        spec = {"rules": [{"select": {"name": "w"}, "steps": [{"type": "prune", "sparsity": 0.5}]}]}
        metrics = compress_file(path, parse_spec(json.dumps(spec)), tmp_path / "out")
    finally:
        sources.unregister("npz-test")
    assert open_source(path).kind == "state_dict"
    with np.load(tmp_path / "out" / "model.npz") as arrays:
        assert (arrays["w"] == 0).sum() == 2048
    assert metrics["files"]["dense_files"] == ["model.npz"]
    assert not (tmp_path / "out" / "model.pth").exists()


def test_builtin_kinds_are_asked_from_the_highest_priority(tmp_path):
    names = [kind.name for kind in sources.kinds()]
    assert names.index("sharded") < names.index("state_dict")
    assert set(sources.BUILTINS) <= set(names)


def test_a_single_safetensors_folder_streams_to_model_pth(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    save_file({"w": torch.ones(4, 4)}, str(folder / "model.safetensors"))
    source = open_source(folder)
    assert source.kind == "sharded" and source.label == "model.safetensors"
    writer = source.dense_writer(tmp_path / "out")
    writer.write("w", torch.ones(4, 4))
    assert [p.name for p in writer.finish()] == ["model.pth"]
