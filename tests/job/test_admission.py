"""The admission checks in the library (compression_core/job/admission.py), without HTTP: what each finds,
from headers and a meta-device probe, and that a job that fits passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from compression_core.job.admission import _channels_last_hint, _graph_fit_problem, admission_problems
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


def test_an_onnx_model_or_teacher_is_checked_against_its_graph_not_by_name(tmp_path: Path) -> None:
    """An ONNX upload's data is fitted to the graph's declared input; an ONNX teacher is no name to look up;
    a state dict teacher still is, once for every trial of a search."""
    import torch

    from tests.sources.onnx.tiny import TinyNet, export

    graph = export(TinyNet(), torch.zeros(1, 64), tmp_path / "tiny.onnx")
    nhwc, flat = tmp_path / "nhwc.npz", tmp_path / "flat.npz"
    np.savez(nhwc, x_train=np.zeros((4, 8, 8, 1), np.float32), y_train=np.arange(4))
    np.savez(flat, x_train=np.zeros((4, 64), np.float32), y_train=np.arange(4))
    onnx = {"arch": "onnx"}
    uploaded = Spec.model_validate({"model": onnx, "data": {"upload": True}})
    assert admission_problems(uploaded, graph, flat) == []
    (problem,) = admission_problems(uploaded, graph, nhwc)
    assert problem.field == "data" and "samples of shape [8, 8, 1]" in problem.message
    assert "graph's input [64]" in problem.message and "transpose" not in problem.message
    (problem,) = admission_problems(
        Spec.model_validate({"model": onnx, "data": {"builtin": "mnist-5k"}}), graph
    )
    assert problem.field == "data" and "data set mnist-5k: samples of shape [784]" in problem.message
    distill = {"model": onnx, "data": {"builtin": "digits"}, "distill": {"teacher": onnx}}
    assert admission_problems(Spec.model_validate(distill), graph, inputs={"teacher": graph}) == []
    teacher = _model(tmp_path, MLP)
    (problem,) = admission_problems(Spec.model_validate(distill), graph, inputs={"teacher": teacher})
    assert problem.field == "spec.distill.teacher.arch"
    assert problem.message == "'onnx' names an uploaded ONNX graph: send the teacher as a .onnx file"


def test_an_onnx_upload_named_as_another_architecture_is_refused(tmp_path: Path) -> None:
    """The graph is the architecture: a spec that also names another one would have it silently ignored."""
    import torch

    from tests.sources.onnx.tiny import TinyNet, export

    graph = export(TinyNet(), torch.zeros(1, 64), tmp_path / "tiny.onnx")
    for arch in ("GarmentNet", "mlp"):
        (problem,) = admission_problems(Spec.model_validate({"model": {"arch": arch}}), graph)
        assert (
            problem.field == "spec.model.arch" and f"the spec's {arch!r} would be ignored" in problem.message
        )
    assert admission_problems(Spec.model_validate({"model": {"arch": "onnx"}}), graph) == []


def test_a_graph_input_with_symbolic_dimensions_takes_any_size_there() -> None:
    assert _graph_fit_problem((3, 32, 32), (3, None, None), "data") is None
    refused = _graph_fit_problem((32, 32, 3), (3, None, None), "data")
    assert refused is not None and "input [3, ?, ?]" in refused and "transpose(0, 3, 1, 2)" in refused
    refused = _graph_fit_problem((3, 32), (3, None, None), "data")
    assert refused is not None and "reshape the arrays" in refused and "transpose" not in refused
    refused = _graph_fit_problem((32, 32, 3), (3, 32, 32), "data")
    assert refused is not None and "transpose(0, 3, 1, 2)" in refused


def test_a_builtin_data_set_that_does_not_fit_the_graph_says_what_the_user_can_change(tmp_path: Path) -> None:
    """docs/bring-your-own-model.md tried as a user: a graph exported for 8x8 images [1, 8, 8] with the
    built-in digits (64 features). The user cannot reshape a built-in's arrays, so "reshape the arrays"
    was no help: the hint names the shape to export with, or the upload to send instead."""
    refused = _graph_fit_problem((64,), (1, 8, 8), "data set digits", builtin="digits")
    assert refused is not None and "reshape the arrays" not in refused
    assert "the built-in 'digits' always gives samples of shape [64]" in refused
    assert "export the model with that input shape" in refused and '{"data": {"upload": true}}' in refused
    assert "samples of shape [1, 8, 8]" in refused
    import torch

    from tests.sources.onnx.tiny import TinyNet, export

    graph = export(TinyNet(), torch.zeros(1, 64), tmp_path / "tiny.onnx")  # takes 64 features
    spec = Spec.model_validate({"model": {"arch": "onnx"}, "data": {"builtin": "mnist-5k"}})
    (problem,) = admission_problems(spec, graph)
    assert problem.field == "data" and "the built-in 'mnist-5k' always gives samples of shape [784]" in (
        problem.message
    )
