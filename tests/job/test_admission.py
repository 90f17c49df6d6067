"""The admission checks in the library (compression_core/job/admission.py), without HTTP: what each finds,
from headers and a meta-device probe, and that a job that fits passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from compression_core.job.admission import _channels_last_hint, admission_problems
from compression_core.models import build_model
from compression_core.spec import Spec

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 10]}}


def _model(tmp_path: Path, model: dict[str, object]) -> Path:
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(model).state_dict().items()}, str(path))
    return path


def test_a_job_that_fits_passes_and_one_that_does_not_is_named(tmp_path: Path) -> None:
    model = _model(tmp_path, MLP)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=np.zeros((4, 64), np.float32), y_train=np.arange(4))
    fits = Spec.model_validate({"model": MLP, "data": {"upload": True}})
    assert admission_problems(fits, model, data) == []
    assert admission_problems(Spec.model_validate({"model": MLP, "data": {"builtin": "digits"}}), model) == []
    wide = Spec.model_validate({"model": MLP, "data": {"builtin": "fashion-mnist"}})
    (problem,) = admission_problems(wide, model)
    assert problem.field == "data" and "data set fashion-mnist: samples of shape [784]" in problem.message
    unknown = Spec.model_validate({"model": {"arch": "GarmentNet"}})
    (problem,) = admission_problems(unknown, model)
    assert problem.field == "spec.model.arch" and "'GarmentNet'" in problem.message


def test_the_channels_last_hint_names_the_transpose_only_when_it_applies() -> None:
    assert "transpose(0, 3, 1, 2)" in _channels_last_hint((32, 32, 3), (3, 32, 32))
    assert "transpose" in _channels_last_hint((28, 28, 1), None)
    assert _channels_last_hint((3, 32, 32), (3, 32, 32)) == ""
    assert _channels_last_hint((784,), (64,)) == ""
