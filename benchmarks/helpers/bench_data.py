"""Data for the reproductions: a built-in, optionally with its training split cut to the first N samples
(reduced runs), written as an upload `.npz` that keeps the built-in's validation and test splits unchanged
(`x_val`/`y_val`, `x_test`/`y_test`), so runs through `compress_file` see exactly the same three splits."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from torch.utils.data import TensorDataset

from compression_core.data import DataSplits, load_builtin
from compression_core.io import load_state_dict
from compression_core.models import build_model, load_into
from compression_core.spec.fields import RetrainConfig
from compression_core.train import save_state_dict, train_reference

__all__ = ["bench_data", "cached_reference", "describe"]


def bench_data(name: str, train_limit: int | None, cache: Path) -> tuple[DataSplits, Path]:
    """The built-in (train cut to `train_limit`) and the path of the same splits as an upload .npz."""
    splits = load_builtin(name)
    if train_limit is not None and train_limit < len(splits.train):
        x, y = splits.train.tensors
        splits.train = TensorDataset(x[:train_limit], y[:train_limit])
    assert splits.validation is not None and splits.test is not None
    path = cache / f"{name}-train{len(splits.train)}.npz"
    if not path.exists():
        arrays = {
            "x_train": splits.train.tensors[0].numpy(),
            "y_train": splits.train.tensors[1].numpy(),
            "x_val": splits.validation.tensors[0].numpy(),
            "y_val": splits.validation.tensors[1].numpy(),
            "x_test": splits.test.tensors[0].numpy(),
            "y_test": splits.test.tensors[1].numpy(),
        }
        np.savez(path, **arrays)  # type: ignore[arg-type]
    return splits, path


def describe(splits: DataSplits) -> str:
    s = splits.sizes
    return f"{splits.name}: {s['train']:,} train / {s['validation']:,} validation / {s['test']:,} test"


def cached_reference(arch: str, splits: DataSplits, epochs: int, cache: Path, seed: int = 0) -> Path:
    """A reference trained with the seeds' recipe (batch 16, SGD 0.005, Nesterov, StepLR 0.95), cached."""
    path = cache / f"{arch}-{splits.name}-n{len(splits.train)}-e{epochs}-s{seed}.safetensors"
    if path.exists():
        load_into(build_model({"arch": arch}), load_state_dict(path))  # still fits
        print(f"reference {arch}: cached {path}")
        return path
    started = time.perf_counter()
    result = train_reference({"arch": arch}, splits, RetrainConfig(epochs=epochs, seed=seed))
    save_state_dict(result.model, path)
    ev = result.evaluation
    print(
        f"reference {arch}: {epochs} epochs in {time.perf_counter() - started:.0f} s, test error "
        f"{100 * ev.error:.2f}% ({round(ev.error * ev.samples)}/{ev.samples}) -> {path}"
    )
    return path
