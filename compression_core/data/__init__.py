"""Data sets for the data-aware steps: built-ins shipped inside installed packages, or the job's upload.

Nothing is downloaded. Built-ins (`mnist-5k`, `digits`, `fashion-mnist`; sizes and sources in `builtin.py`)
have fixed splits. Every data set gets a validation split carved from its training data with a fixed seed
(`splits.py`): choices are made on it, the test split is only reported.

Uploads: an `.npz` (read with `allow_pickle=False`, so object arrays are refused) or a `.safetensors` file
holding `x_train`, `y_train`, optionally `x_test`, `y_test` and optionally `x_val`, `y_val` (used as the
validation split instead of carving one from the training data). Features are floating point, labels integers.
`check_against_model` runs one batch through the model and checks labels against its outputs.

Labels are optional: with `x_*` arrays only (`DataSplits.labelled` False) a job reports fidelity to the
uploaded model instead of an error (`compression_core/fidelity.py`), and when the model's outputs are class
scores (batch, classes) its top-1 predictions become the labels that training methods fit.
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
    "upload_array_shapes",
]

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("x_train",)
OPTIONAL_KEYS = ("y_train", "x_test", "y_test", "x_val", "y_val")
KEYS = (*REQUIRED_KEYS, *OPTIONAL_KEYS)


def key_problem(name: str, keys: Any) -> str | None:
    """What is wrong with an upload's array names (None: nothing), with what to do: `x_train` is required,
    labels are optional (`y_*` for every split or for none), names are lower case (`X_train` is refused
    with a hint). Used by the loader and by the API's check at POST /jobs, which reads only the names."""
    keys = sorted(str(k) for k in keys)
    unknown = [k for k in keys if k not in KEYS]
    if unknown:
        hints = [f"{k} -> {k.lower()}" for k in unknown if k.lower() in KEYS]
        hint = f" (names are lower case: rename {', '.join(hints)})" if hints else ""
        return f"{name}: unexpected arrays {unknown}{hint}; allowed: {', '.join(KEYS)}"
    if "x_train" not in keys:
        return (
            f"{name}: missing arrays ['x_train']; expected x_train (and optionally y_train, x_test, y_test, "
            f"x_val, y_val), found {keys}"
        )
    labelled = any(k.startswith("y_") for k in keys)
    if labelled and "y_train" not in keys:
        return f"{name}: missing arrays ['y_train']; give labels for every split or for none"
    for split in ("test", "val"):
        if (f"y_{split}" in keys and f"x_{split}" not in keys) or (
            labelled and f"x_{split}" in keys and f"y_{split}" not in keys
        ):
            return (
                f"{name}: x_{split} and y_{split} must be given together (labels for every split or for none)"
            )
    return None


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


def upload_array_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Array names and shapes of an uploaded data file from its headers alone (each `.npz` member's `.npy`
    header, checked as the loader checks them; the `.safetensors` header): what the API checks at
    POST /jobs before anything is queued. InputError for an unreadable file."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path.name}: not a readable .npz archive (not a zip file)")
        return {key: shape for key, (_, _, shape) in _npz_members(path).items()}
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as handle:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"{path.name}: not a readable .safetensors file: {exc}") from exc
    raise InputError(
        f"{path.name}: data sets must be .npz or .safetensors, not {path.suffix or 'no extension'}"
    )


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
    return splits_from_arrays(read_arrays(path, "data sets"), name=path.name, validation=validation)


def read_arrays(path: Path, what: str) -> dict[str, Any]:
    """The named arrays of an uploaded .npz or .safetensors file (`what` names them in the error)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".safetensors":
        return _read_safetensors(path)
    raise InputError(f"{path.name}: {what} must be .npz or .safetensors, not {suffix or 'no extension'}")


def splits_from_arrays(
    arrays: Mapping[str, np.ndarray], name: str = "upload", validation: float = DEFAULT_VALIDATION_FRACTION
) -> DataSplits:
    """Validate keys, dtypes, shapes and labels of a dict of arrays and turn it into DataSplits (without
    `y_*` arrays: unlabelled, see `DataSplits.labelled`)."""
    problem = key_problem(name, arrays)
    if problem is not None:
        raise InputError(problem)
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise InputError(f"{name}: {key} is an object array; only numeric arrays are accepted")
    splits = make_splits(
        name,
        arrays["x_train"],
        arrays.get("y_train"),
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
    if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != x.shape[0]:
        shown = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"{splits.name}: the model returns {shown}; expected one tensor (batch, ...)")
    if not splits.labelled:  # fidelity to the upload needs outputs, not class scores
        return
    if out.dim() != 2:
        raise InputError(
            f"{splits.name}: the model returns shape {tuple(out.shape)}; labels need (batch, classes) "
            "outputs (upload x_* arrays without y_* to be measured by fidelity to the uploaded model)"
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
