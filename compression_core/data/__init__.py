"""Data sets for the data-aware steps: built-ins shipped inside installed packages, or the job's upload.

Nothing is downloaded. Built-ins (`mnist-5k`, `digits`, `fashion-mnist`; sizes and sources in `builtin.py`)
have fixed splits. Every data set gets a validation split carved from its training data with a fixed seed
(`splits.py`): choices are made on it, the test split is only reported.

Uploads: an `.npz` (read with `allow_pickle=False`, so object arrays are refused) or a `.safetensors` file
holding `x_train`, `y_train`, optionally `x_test`, `y_test` and optionally `x_val`, `y_val` (used as the
validation split instead of carving one from the training data). Features are floating point, labels integers.
`check_against_model` runs one batch through the model and checks labels against its outputs.
"""

from __future__ import annotations

import logging
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compression_core.budget import check_bytes
from compression_core.data.builtin import BUILTIN_DATASETS, DatasetUnavailable, load_builtin
from compression_core.data.splits import (
    DEFAULT_VALIDATION_FRACTION,
    MAX_SAMPLES,
    DataSplits,
    make_splits,
    split_info,
)
from compression_core.errors import InputError, SpecError
from compression_core.spec.fields import DataSpec

__all__ = [
    "BUILTIN_DATASETS",
    "MAX_SAMPLES",
    "DataSpec",
    "DataSplits",
    "DatasetUnavailable",
    "check_against_model",
    "load_builtin",
    "load_data",
    "load_upload",
    "split_info",
]

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("x_train", "y_train")
OPTIONAL_KEYS = ("x_test", "y_test", "x_val", "y_val")


def _npz_members(path: Path) -> dict[str, tuple[str, np.dtype, tuple[int, ...]]]:
    """key -> (member name, dtype, shape) from each member's .npy header alone (a deflated member of a few
    bytes can declare gigabytes): object arrays, sample counts and the byte budget are checked before any
    load. A key given twice (`x_train` beside `x_train.npy`, or a repeated member name) is refused: the
    member checked must be the member loaded (`_read_npz` reads exactly these names)."""
    members: dict[str, tuple[str, np.dtype, tuple[int, ...]]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                if key in members:
                    raise InputError(
                        f"{path.name}: the archive holds {key} twice ({members[key][0]!r} and "
                        f"{info.filename!r}); give each array once"
                    )
                with archive.open(info) as handle:
                    version = np.lib.format.read_magic(handle)
                    header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = header(handle)
                members[key] = (info.filename, dtype, tuple(shape))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(
            f"{path.name}: not a readable .npz archive (truncated or corrupted: {exc})"
        ) from None
    total = 0
    for key, (_, dtype, shape) in members.items():
        if dtype.hasobject:
            raise InputError(f"{path.name}: refused: {key} is a pickled (object) array")
        if shape and shape[0] > MAX_SAMPLES:
            raise InputError(f"{path.name}: {key} has {shape[0]} samples, more than the limit {MAX_SAMPLES}")
        total += math.prod(shape) * dtype.itemsize
    check_bytes(
        f"{path.name}: the arrays {sorted(members)} of shapes {[s for _, _, s in members.values()]}", total
    )
    return members


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):  # np.load would otherwise try it as a pickle (and refuse)
        raise InputError(f"{path.name}: not a readable .npz archive (not a zip file)")
    members = _npz_members(path)
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {}
            for key, (member, _, shape) in members.items():
                with archive.open(member) as handle:
                    array = np.lib.format.read_array(handle, allow_pickle=False)
                if array.shape != shape:  # the header read above is the one read here
                    raise ValueError(f"{member} changed shape while it was read")
                arrays[key] = array
            return arrays
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:  # headers were fine: the data is cut
        raise InputError(f"{path.name}: not a readable .npz archive (truncated or corrupted: {exc})") from exc


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path.name}: not a readable .safetensors file: {exc}") from exc


def load_upload(path: str | Path, validation: float = DEFAULT_VALIDATION_FRACTION) -> DataSplits:
    """Read and check an uploaded data set (.npz or .safetensors); every problem is an InputError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = _read_npz(path)
    elif suffix == ".safetensors":
        arrays = _read_safetensors(path)
    else:
        raise InputError(
            f"{path.name}: data sets must be .npz or .safetensors, not {suffix or 'no extension'}"
        )
    return splits_from_arrays(arrays, name=path.name, validation=validation)


def splits_from_arrays(
    arrays: Mapping[str, np.ndarray], name: str = "upload", validation: float = DEFAULT_VALIDATION_FRACTION
) -> DataSplits:
    """Validate keys, dtypes, shapes and labels of a dict of arrays and turn it into DataSplits."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise InputError(
            f"{name}: missing arrays {missing}; expected x_train, y_train (and optionally x_test, y_test), "
            f"found {sorted(arrays)}"
        )
    unknown = sorted(set(arrays) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise InputError(
            f"{name}: unexpected arrays {unknown}; allowed: x_train, y_train, x_test, y_test, x_val, y_val"
        )
    for split in ("test", "val"):
        if (f"x_{split}" in arrays) != (f"y_{split}" in arrays):
            raise InputError(f"{name}: x_{split} and y_{split} must be given together")
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise InputError(f"{name}: {key} is an object array; only numeric arrays are accepted")
    splits = make_splits(
        name,
        arrays["x_train"],
        arrays["y_train"],
        arrays.get("x_test"),
        arrays.get("y_test"),
        validation_fraction=validation,
        x_val=arrays.get("x_val"),
        y_val=arrays.get("y_val"),
        index_spaces={
            "train": "x_train",
            "validation": "x_val" if "x_val" in arrays else "x_train",
            "test": "x_test",
        },
    )
    splits.uploaded = True
    return splits


def check_against_model(splits: DataSplits, model: nn.Module, batch: int = 4) -> None:
    """Run one small batch through the model; raise InputError if the inputs do not fit or labels exceed
    the model's outputs."""
    x = splits.train.tensors[0][:batch]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(device))
    except (RuntimeError, ValueError, IndexError) as exc:
        raise InputError(
            f"{splits.name}: samples of shape {tuple(x.shape[1:])} do not fit the model: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    finally:
        model.train(was_training)
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise InputError(
            f"{splits.name}: the model returns shape {tuple(out.shape)}; expected (batch, classes)"
        )
    if splits.num_classes > out.shape[1]:
        raise InputError(
            f"{splits.name}: labels go up to {splits.num_classes - 1} but the model has "
            f"only {out.shape[1]} outputs"
        )


def load_data(data_spec: DataSpec | Mapping[str, Any], data_path: str | Path | None = None) -> DataSplits:
    """Load what a spec's `data` field names: a built-in, or the job's uploaded data file."""
    spec = (
        data_spec
        if isinstance(data_spec, DataSpec)
        else DataSpec.model_validate(
            dict(data_spec) if isinstance(data_spec, Mapping) else data_spec.model_dump()
        )
    )
    if spec.builtin is not None:
        return load_builtin(spec.builtin, spec.validation)
    if data_path is None:
        raise SpecError('the spec asks for {"upload": true} data but no data file was uploaded with the job')
    return load_upload(data_path, spec.validation)
