"""The Hugging Face checkpoint source: what it claims, the module transformers builds from config.json, the
refusals (remote code, unknown architectures, stray tar members), and the dense output."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from compression_core.errors import InputError, UnsupportedModel
from compression_core.sources import check_upload, open_source
from compression_core.spec import ModelSpec

transformers = pytest.importorskip("transformers")


def _checkpoint(folder: Path, *, tied: bool = False, extra_config: dict | None = None) -> Path:
    from tests.sources.hf.tiny_lm import tiny_config

    config = tiny_config(hidden=128, layers=1, intermediate=256)
    config.tie_word_embeddings = tied
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    (folder / "tokenizer.json").write_text('{"version": "1.0", "note": "carried untouched"}')
    if extra_config:
        doc = json.loads((folder / "config.json").read_text())
        doc.update(extra_config)
        (folder / "config.json").write_text(json.dumps(doc))
    return folder


def _tar(folder: Path, target: Path, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(target, "w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"ckpt/{path.name}")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


@pytest.mark.parametrize("tied", [False, True])
def test_the_module_is_what_transformers_loads_from_the_folder_or_its_tar(tmp_path: Path, tied: bool) -> None:
    folder = _checkpoint(tmp_path / "ckpt", tied=tied)
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, 256, (2, 16))
    for path in (folder, _tar(folder, tmp_path / "ckpt.tar")):
        check_upload(path)
        with open_source(path) as source:
            assert source.kind == "hf"
            assert source.describe()["architecture"] == ["LlamaForCausalLM"]
            model = source.module()
            assert torch.equal(model(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_hf_true_claims_the_input_and_names_what_is_missing(tmp_path: Path) -> None:
    plain = tmp_path / "model.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(InputError, match="config.json"):
        check_upload(plain, ModelSpec(hf=True))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"auto_map": {"AutoModelForCausalLM": "modeling_evil.EvilLM"}}, "auto_map"),
        ({"architectures": ["EvilForCausalLM"]}, "EvilForCausalLM"),
        ({"model_type": "evil"}, "evil"),
    ],
)
def test_remote_code_or_an_unknown_architecture_is_refused_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict, named: str
) -> None:
    folder = _checkpoint(tmp_path / "ckpt", extra_config=extra)
    built: list[str] = []
    monkeypatch.setattr(
        transformers.PreTrainedModel,
        "_from_config",
        classmethod(lambda cls, *a, **k: built.append(cls.__name__)),
    )
    for path in (folder, _tar(folder, tmp_path / "ckpt.tar")):
        with pytest.raises(UnsupportedModel, match=named):
            check_upload(path)
        with open_source(path) as source, pytest.raises(UnsupportedModel, match=named):
            source.module()
    assert built == []


def test_a_tar_with_anything_else_is_refused(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    tar = _tar(folder, tmp_path / "ckpt.tar", extra={"ckpt/modeling_evil.py": b"import os"})
    with pytest.raises(InputError, match="modeling_evil.py"):
        check_upload(tar)


def test_a_tensor_outside_its_file_is_refused_at_the_check(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated: the last tensor's bytes are missing
    with pytest.raises(InputError, match="outside the file"):
        check_upload(_tar(folder, tmp_path / "ckpt.tar"))


def test_the_dense_output_loads_and_carries_the_tokenizer_untouched(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    with open_source(_tar(folder, tmp_path / "ckpt.tar")) as source:
        state = source.state_dict()
        state = {k: v * 2 for k, v in state.items()}
        (written,) = source.write(tmp_path / "out", state)
    assert written.name == "model.hf.tar"
    with tarfile.open(written) as tar:
        tar.extractall(tmp_path / "loaded", filter="data")
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "loaded")
    assert torch.equal(loaded.state_dict()["model.norm.weight"], state["model.norm.weight"])
    assert (tmp_path / "loaded" / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
