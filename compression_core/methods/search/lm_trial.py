"""One trial of a search on a Hugging Face causal LM (`model.hf`): the ordinary pipeline on the job's token
ids, with validation token ids beside the test ones, so the trial's `evaluation.before/after` carry the
perplexity on both splits (`sources/hf/source.py`). The search chooses on the validation split; the test
split stays the reported `evaluation`.

The validation split is the upload's own `validation` array when it has one; otherwise a fixed share of the
`train` ids is held out (the search's `validation.fraction` and `seed`: random rows of a 2-D array, the tail
of a 1-D one, so held-out text stays contiguous) and the trial calibrates / trains on the rest. A trial's
`ratio` is the upload's bytes over the checkpoint it ships (`model.quantized.tar` when weight quantization
wrote one, else `totals.ratio`): what "the smallest model" means for a search over quantization formats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compression_core.errors import CompressionError, InputError
from compression_core.methods.search.spec import Holdout
from compression_core.methods.search.trial import compress_on_arrays

__all__ = ["carve_tokens", "run_lm_trial"]

QUANTIZED = "model.quantized.tar"  # methods/wquant's checkpoint


def carve_tokens(arrays: Mapping[str, np.ndarray], holdout: Holdout, name: str) -> tuple[dict[str, Any], str]:
    """(train / validation / test arrays for a trial, where the validation ids came from)."""
    if "validation" in arrays:
        return dict(arrays), "the upload's `validation` token ids"
    train = arrays.get("train")
    if train is None:
        raise InputError(
            f"{name}: a search on a language model chooses on validation token ids: upload a `validation` "
            "array, or `train` ids to hold a share of out"
        )
    out = {key: value for key, value in arrays.items() if key != "train"}
    if train.ndim == 1:
        count = max(1, round(holdout.fraction * train.shape[0]))
        out["train"], out["validation"] = train[:-count], train[-count:]
        where = f"the last {holdout.fraction:g} of the `train` ids"
    else:
        count = min(train.shape[0] - 1, max(1, round(holdout.fraction * train.shape[0])))
        if count < 1:
            raise InputError(f"{name}: `train` has one row; nothing can be held out for validation")
        order = np.random.default_rng(holdout.seed).permutation(train.shape[0])
        out["validation"] = train[np.sort(order[:count])]
        out["train"] = train[np.sort(order[count:])]
        where = f"{count} of the {train.shape[0]} `train` rows (seed {holdout.seed})"
    if out["train"].size == 0:
        del out["train"]
    return out, f"held out of the training ids: {where}; the trial calibrated / trained on the rest"


def run_lm_trial(
    model_path: Path,
    spec: Any,
    out_dir: Path,
    holdout: Holdout,
    *,
    progress: Callable[..., None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    device: str = "cpu",
    data_path: Path | None = None,
    inputs: Mapping[str, Path] | None = None,
    checkpoint_dir: Path | None = None,
) -> dict[str, Any]:
    """out_dir gets the trial's outputs and metrics.json with `search_trial` (validation perplexity before
    and after, the ratio); returns the metrics."""
    from compression_core.data import read_arrays
    from compression_core.metrics import write_metrics

    if data_path is None:
        raise InputError("search: a language model's trials need the uploaded token ids (`data`)")
    clock = time.perf_counter()
    arrays, source = carve_tokens(read_arrays(Path(data_path), "token ids"), holdout, Path(data_path).name)
    metrics = compress_on_arrays(
        model_path,
        spec,
        out_dir,
        arrays,
        progress=progress,
        should_cancel=should_cancel,
        device=device,
        inputs=inputs,
        checkpoint_dir=checkpoint_dir,
    )
    evaluation = metrics.get("evaluation") or {}
    before = (evaluation.get("before") or {}).get("validation")
    after = (evaluation.get("after") or {}).get("validation")
    if before is None or after is None:
        raise CompressionError(
            "search: the trial reported no perplexity before and after (a language model's trial needs a "
            "step that evaluates: `wquant`, `retrain` or `distill`)"
        )
    files = metrics.get("files") or {}
    shipped = (files.get("extra") or {}).get(QUANTIZED)
    if shipped and files.get("input_bytes"):
        ratio, ratio_of = files["input_bytes"] / shipped, f"uploaded bytes / {QUANTIZED} bytes"
    else:
        ratio, ratio_of = (metrics.get("totals") or {}).get("ratio"), "totals.ratio"
    metrics["search_trial"] = {
        "validation": {
            "before": before,
            "after": after,
            "fraction": holdout.fraction,
            "seed": holdout.seed,
            "split": source,
        },
        "ratio": ratio,
        "ratio_of": ratio_of,
        "seconds": time.perf_counter() - clock,
    }
    data = evaluation.get("data")
    if isinstance(data, dict):
        data["name"] = Path(data_path).name
    write_metrics(Path(out_dir) / "metrics.json", metrics)
    return metrics
