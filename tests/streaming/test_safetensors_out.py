"""`SafetensorsStream`: the bytes read out of it are a safetensors file that safetensors loads back to the
same tensors (every dtype a checkpoint holds, scalars and empty tensors, a non-contiguous view), whatever
the read sizes; the checkpoint tar is written from it without serializing the whole file in memory."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load

from compression_core.streaming.safetensors_out import SafetensorsStream


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed.weight": torch.randn(7, 5, generator=g),
        "model.layers.0.q.weight_packed": torch.randint(-(2**31), 2**31 - 1, (3, 4), dtype=torch.int32),
        "model.layers.0.q.weight_scale": torch.randn(3, 1, generator=g).to(torch.bfloat16),
        "model.layers.0.q.weight_shape": torch.tensor([3, 32]),
        "model.layers.0.q.weight_zero_point": torch.randint(-8, 8, (3, 1), dtype=torch.int8),
        "half": torch.randn(4, generator=g).half(),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "transposed": torch.randn(4, 6, generator=g).T,  # not contiguous
    }


@pytest.mark.parametrize("chunk", [-1, 1, 7, 4096])
def test_the_stream_is_a_safetensors_file_with_the_same_tensors(chunk: int) -> None:
    tensors = _tensors()
    stream = SafetensorsStream(tensors, metadata={"format": "pt"})
    pieces = []
    while piece := stream.read(chunk):
        pieces.append(piece)
        assert chunk < 0 or len(piece) <= chunk
    blob = b"".join(pieces)
    assert len(blob) == stream.size
    loaded = load(blob)
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name


def test_the_metadata_is_kept_and_an_unknown_dtype_is_named(tmp_path) -> None:
    path = tmp_path / "m.safetensors"
    stream = SafetensorsStream({"w": torch.ones(2)}, metadata={"format": "pt"})
    path.write_bytes(stream.read())
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    with pytest.raises(ValueError, match="w: dtype torch.complex64"):
        SafetensorsStream({"w": torch.ones(2, dtype=torch.complex64)})
