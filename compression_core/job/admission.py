"""The checks a job passes before it is queued (`POST /jobs`, and `POST /jobs/validate` with them), from
metadata alone: nothing is loaded, no model is built with real parameters.

- every architecture the spec names (`model.arch`, and a method's own, e.g. `distill.teacher.arch`) is one
  this installation builds (built-ins, torchvision classifiers, `mcs.models` plug-ins); a search's trials
  all build the spec's `model`, so an unknown name there is refused once, before any trial is planned;
- the uploaded state dict's tensor names and shapes (its header) fit the architecture, probed on the meta
  device (`compression_core.models.meta_model`, sized against the byte budget first);
- the data file's array names (`x_train`, optional `y_*`; `X_train` is refused with a hint) and one
  sample's shape (the `.npy` / safetensors headers, or a built-in's known shape) fit the model's input: one
  forward pass of the meta-device probe on a meta tensor, which allocates nothing. NHWC images for a model
  that wants NCHW are named as such, with the transpose to apply;
- data without labels: an error budget (`search.max_error_increase`) is refused for a fidelity budget, and
  methods that train are refused when the model's outputs are not class scores to take labels from.

Each problem names the request's field (`spec.model.arch`, `data`, `model`, ...) and what to do; the service
answers them as one 422 problem. Kinds of model input that carry their own graph (not a state dict plus an
architecture name) are left to their own `SourceKind.check`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compression_core.errors import InputError, SpecError
from compression_core.spec.fields import ModelSpec
from compression_core.spec.model import SpecBase

if TYPE_CHECKING:
    from compression_core.sources.base import SourceKind

__all__ = ["Problem", "admission_problems"]

log = logging.getLogger(__name__)

NAMED_ARCHITECTURE_KINDS = ("state_dict", "sharded")  # inputs whose module is built from `model.arch`
MAX_LISTED = 20


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


def _named_models(spec: SpecBase) -> Iterator[tuple[str, ModelSpec]]:
    """(field path, ModelSpec) of every architecture the spec names."""
    from compression_core.methods import registry

    if spec.model is not None:
        yield "spec.model.arch", spec.model
    for method, config in registry.present_methods(spec):
        for name in type(config).model_fields:
            value = getattr(config, name, None)
            if isinstance(value, ModelSpec):
                yield f"spec.{method.name}.{name}.arch", value


def _architecture_problems(spec: SpecBase, skip: frozenset[str] = frozenset()) -> list[Problem]:
    """Unknown architecture names; `skip`: the fields whose input carries its own graph (an ONNX model or
    teacher, a Hugging Face config), which no name builds."""
    from compression_core.methods.outer import outer_method
    from compression_core.models import available_architectures
    from compression_core.sources import kinds

    named = [(f, m) for f, m in _named_models(spec) if f not in skip]
    if not named:  # a data-free spec: nothing to look up (torchvision is not even imported)
        return []
    known = available_architectures()
    names = {name for group in known.values() for name in group}
    outer = outer_method(spec)
    problems = []
    for field, model in named:
        if model.arch in names:
            continue
        trials = f" (every trial of the {outer.name} builds it)" if outer is not None else ""
        if model.arch == "onnx":  # the name an ONNX upload goes by (docs/bring-your-own-model.md)
            role = "model" if field == "spec.model.arch" else field.split(".")[-2]
            problems.append(
                Problem(
                    field, f"'onnx' names an uploaded ONNX graph{trials}: send the {role} as a .onnx file"
                )
            )
            continue
        onnx = ", or upload the model as an .onnx graph" if any(k.name == "onnx" for k in kinds()) else ""
        plugins = f" the operator's {known['registered']}" if known["registered"] else ""
        problems.append(
            Problem(
                field,
                f"unknown architecture {model.arch!r}{trials}: use one of the built-ins {known['builtin']}, "
                f"a torchvision classifier (e.g. resnet18), an operator-registered 'mcs.models' entry "
                f"point{plugins}{onnx}",
            )
        )
    return problems


def _source_kind(path: Path, model: Any) -> SourceKind | None:
    from compression_core.sources import kind_of

    try:
        return kind_of(path, model)
    except InputError:
        return None


def _fit_problems(probe: Any, path: Path) -> list[Problem]:
    from compression_core.deploy.preflight import fit_problems, upload_shapes

    try:
        shapes = upload_shapes(path)
    except InputError:
        return []  # the upload's own check names what is wrong with the file
    found = fit_problems(probe, shapes)
    shown = found[:MAX_LISTED] + ([f"... ({len(found)} in all)"] if len(found) > MAX_LISTED else [])
    return [Problem("model", f"{m}: the state dict does not fit the spec's model.arch") for m in shown]


def _meta_forward(probe: Any, sample: tuple[int, ...]) -> tuple[tuple[int, ...] | None, str | None]:
    """(one sample's output shape, None) when the probe takes the sample; (None, reason) when its shapes
    refuse it; (None, None) when the meta device cannot tell (a data-dependent operation)."""
    import torch

    probe.eval()
    try:
        with torch.no_grad():
            out = probe(torch.empty((2, *sample), device="meta"))
    except NotImplementedError:
        return None, None
    except Exception as error:  # noqa: BLE001 - a shape error names the misfit; others are undecided
        text = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        if "meta" in text.lower():
            return None, None
        return None, text
    return (tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None), None


def _channels_last_hint(sample: tuple[int, ...], expected: tuple[int, ...] | None) -> str:
    looks_nhwc = len(sample) == 3 and sample[-1] in (1, 3, 4) and sample[0] not in (1, 3, 4)
    permuted = expected is not None and sorted(sample) == sorted(expected) and sample != expected
    if not (looks_nhwc or permuted):
        return ""
    want = f" {list(expected)}" if expected is not None else ""
    return (
        f"; the samples look channels-last (NHWC: height, width, channels) and the model takes channels "
        f"first{want}: upload x = x.transpose(0, 3, 1, 2) (numpy) or x.permute(0, 3, 1, 2) (torch)"
    )


def _data_shapes(spec: SpecBase, data_path: Path | None) -> tuple[dict[str, tuple[int, ...]] | None, str]:
    """The data's array shapes and its name in messages (None: nothing to check)."""
    from compression_core.data import upload_array_shapes
    from compression_core.data.builtin import SAMPLE_SHAPES

    if spec.data is None:
        return None, ""
    if spec.data.builtin is not None:
        shape = SAMPLE_SHAPES.get(spec.data.builtin)
        return ({"x_train": (1, *shape), "y_train": (1,)} if shape else None), f"data set {spec.data.builtin}"
    if data_path is None:
        raise InputError(
            'the spec asks for {"upload": true} data but no `data` file (.npz or .safetensors) was sent'
        )
    return upload_array_shapes(data_path), "data"


def _shape_problem(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """What the loader would refuse in the arrays' shapes (`data/splits.py`), from their headers."""
    for split in ("train", "test", "val"):
        x, y = shapes.get(f"x_{split}"), shapes.get(f"y_{split}")
        if x is None:
            continue
        if len(x) < 2:
            return f"x_{split} has shape {list(x)}; expected (samples, features...)"
        if split != "train" and x[1:] != shapes["x_train"][1:]:
            return f"x_{split} samples have shape {list(x[1:])}, x_train {list(shapes['x_train'][1:])}"
        if y is not None and tuple(y) != (x[0],):
            return f"y_{split} has shape {list(y)}; expected ({x[0]},): one class index per x_{split} sample"
    return None


def _graph_fit_problem(
    sample: tuple[int, ...], declared: tuple[int | None, ...], what: str, builtin: str | None = None
) -> str | None:
    """Why samples of shape `sample` do not fit a graph input declared `declared` (None: symbolic).
    A built-in data set's arrays cannot be reshaped by the user, so its hint says what they can change."""
    if len(sample) == len(declared) and all(
        d is None or d == s for s, d in zip(sample, declared, strict=True)
    ):
        return None
    shown = "[" + ", ".join("?" if d is None else str(d) for d in declared) + "]"
    expected = None if None in declared else tuple(int(d) for d in declared if d is not None)
    same_rank = len(sample) == len(declared)  # a transpose can only help samples of the graph's rank
    if builtin is not None:
        hint = (
            f"; the built-in {builtin!r} always gives samples of shape {list(sample)}: export the model "
            f"with that input shape (reshape inside forward()), or send your own data "
            f'({{"data": {{"upload": true}}}} and a data file) with samples of shape {shown}'
        )
    else:
        hint = (same_rank and _channels_last_hint(sample, expected)) or "; reshape the arrays to that shape"
    return (
        f"{what}: samples of shape {list(sample)} (x_train without the batch) do not fit the uploaded "
        f"graph's input {shown} (its declared shape without the batch){hint}"
    )


def _data_problems(
    spec: SpecBase,
    data_path: Path | None,
    probe: Any,
    graph_sample: tuple[int | None, ...] | None = None,
) -> list[Problem]:
    """The data against the model: its keys and shapes, labels the methods need, one sample through the
    meta-device `probe` or, for an input that carries its graph, against the graph's `graph_sample`."""
    from compression_core.data import key_problem
    from compression_core.methods import registry
    from compression_core.methods.base import CompressMethod, PrepareMethod
    from compression_core.models.inputs import known_input_shape

    try:
        shapes, what = _data_shapes(spec, data_path)
    except InputError as error:
        return [Problem("data", str(error).removeprefix(f"{data_path.name}: " if data_path else ""))]
    if shapes is None:
        return []
    problem = key_problem("the data file", shapes) or _shape_problem(shapes)
    if problem is not None:
        return [Problem("data", problem.removeprefix("the data file: "))]
    problems = []
    labelled = "y_train" in shapes
    search = spec.method("search")
    if not labelled and search is not None and search.budget_measure == "error" and search.budget_fraction:
        problems.append(
            Problem(
                "spec.search.max_error_increase",
                "the data has no labels (no y_train), so no error can be measured; state the budget as "
                "min_top1_agreement or max_relative_output_error (fidelity to the uploaded model), or "
                "upload y_* labels",
            )
        )
    sample = tuple(shapes["x_train"][1:])
    if probe is None and graph_sample is not None:
        misfit = _graph_fit_problem(sample, graph_sample, what, spec.data.builtin if spec.data else None)
        return problems + ([Problem("data", misfit)] if misfit else [])
    if probe is None or spec.model is None:
        return problems
    expected = tuple(spec.model.input_shape) if spec.model.input_shape else None
    expected = expected or known_input_shape(spec.model.arch, dict(spec.model.kwargs))
    output, refused = _meta_forward(probe, sample)
    if refused is not None:
        problems.append(
            Problem(
                "data",
                f"{what}: samples of shape {list(sample)} (x_train without the batch) do not fit "
                f"{spec.model.arch!r}'s input{f' {list(expected)}' if expected else ''}: {refused}"
                f"{_channels_last_hint(sample, expected)}",
            )
        )
        return problems
    if output is None:
        return problems
    scores = len(output) == 1 and output[0] > 1
    if labelled and not scores:
        problems.append(
            Problem(
                "data",
                f"{what}: labels need (batch, classes) outputs, and {spec.model.arch!r} gives "
                f"{list(output)} per sample; upload x_* arrays without y_* to be measured by fidelity",
            )
        )
    training = [
        m.name for m, _ in registry.present_methods(spec) if isinstance(m, PrepareMethod | CompressMethod)
    ]
    if not labelled and not scores and training:
        problems.append(
            Problem(
                f"spec.{training[0]}",
                f"{', '.join(training)} train on labels; the data has none and {spec.model.arch!r}'s outputs "
                f"{list(output)} per sample are not class scores to take them from: upload y_* labels",
            )
        )
    return problems


def _graph_fields(spec: SpecBase, model_kind: str | None, inputs: Mapping[str, Path]) -> frozenset[str]:
    """The `...arch` fields whose input carries its own graph: the model's, a method's (`teacher`) whose
    upload role is the field's name."""
    fields = set()
    if model_kind is not None and model_kind not in NAMED_ARCHITECTURE_KINDS:  # ONNX, a Hugging Face config
        fields.add("spec.model.arch")
    for field, model in _named_models(spec):
        role = field.split(".")[-2]
        if field != "spec.model.arch" and role in inputs and carries_graph(inputs[role], model):
            fields.add(field)
    return frozenset(fields)


def _graph_sample(kind: SourceKind | None, path: Path | None) -> tuple[int | None, ...] | None:
    """The input shape a graph-carrying upload declares (None: not such an upload, or unreadable: its own
    check names what is wrong with the file)."""
    if kind is None or kind.sample_shape is None or path is None:
        return None
    try:
        return kind.sample_shape(path)
    except InputError:
        return None


def admission_problems(
    spec: SpecBase,
    model_path: Path | None,
    data_path: Path | None = None,
    inputs: Mapping[str, Path] | None = None,
) -> list[Problem]:
    """What stops this job before it is queued (empty: nothing found). Reads headers only; the model is
    probed on the meta device within the byte budget. `inputs`: the methods' extra uploads by role
    (`teacher`), so that an ONNX teacher is not looked up by name."""
    from compression_core.models import meta_model

    found = _source_kind(model_path, spec.model) if model_path is not None else None
    kind = found.name if found is not None else None
    if kind == "onnx" and spec.model is not None and spec.model.arch != "onnx":
        return [  # the graph would replace the named architecture without a word
            Problem(
                "spec.model.arch",
                f"the model upload is an ONNX graph, which carries its own architecture: name it 'onnx' "
                f"(the spec's {spec.model.arch!r} would be ignored)",
            )
        ]
    problems = _architecture_problems(spec, _graph_fields(spec, kind, inputs or {}))
    if problems:
        return problems
    probe = None
    if spec.model is not None and kind in NAMED_ARCHITECTURE_KINDS:
        try:
            probe = meta_model(spec.model)
        except SpecError as error:
            return [Problem("spec.model", str(error))]
        assert model_path is not None
        problems += _fit_problems(probe, model_path)
        if problems:
            return problems
    if found is not None and found.check_job is not None and spec.data is not None and model_path is not None:
        problems += [Problem(field, message) for field, message in found.check_job(model_path, data_path)]
    if found is not None and found.check_data is not None:  # the source checks its data (token ids)
        return problems
    return problems + _data_problems(spec, data_path, probe, _graph_sample(found, model_path))


def carries_graph(path: Path, model: Any) -> bool:
    """Whether the model input builds its own module (an ONNX graph, a Hugging Face config) rather than
    one named by `model.arch`."""
    kind = _source_kind(path, model)
    return kind is not None and kind.name not in NAMED_ARCHITECTURE_KINDS


def as_dicts(problems: list[Problem]) -> list[Mapping[str, str]]:
    return [{"field": p.field, "message": p.message} for p in problems]
