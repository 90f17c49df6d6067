"""Architectures by name: the built-ins, operator-registered ones and every torchvision classifier.

A job names its architecture as data (`{"arch": "resnet18", "kwargs": {"num_classes": 10}}`); the worker
builds it from code installed on the worker. Code is never loaded from an upload:

- built-ins: `lenet300`, `lenet5`, `mlp` (see `builtin.py`) and the Fire-module students `squeezenet-lenet5`,
  `squeezenet-vgg` (with its original `vgg-small`) and `squeezenet1_1-mnist` (see `squeeze.py`);
- private architectures: the operator installs a package that declares an entry point in the group
  `mcs.models` (`[project.entry-points."mcs.models"] mynet = "mypkg.nets:MyNet"`); the entry point's
  object is called with the spec's kwargs and must return an `nn.Module`;
- torchvision: every classification model `torchvision.models.list_models()` knows, always with
  `weights=None`, so nothing is downloaded.

Exported programs (`.pt2`, `torch.export`) are never a job input (the service refuses the extension with
415, `mcs compress` with exit 2): `torch.export.load` unpickles parts of the archive, so a hostile upload
could run code in the worker. `load_exported_program` is for an operator's own code on trusted files, and
refuses unless `MCS_TRUST_EXPORTED_PROGRAMS=1`; no job path calls it (docs/spec.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from compression_core.budget import check_bytes
from compression_core.errors import InputError, SpecError
from compression_core.models.builtin import BUILTIN_MODELS, MLP, LeNet5, LeNet300
from compression_core.spec.fields import ModelSpec

__all__ = [
    "BUILTIN_MODELS",
    "ENTRY_POINT_GROUP",
    "LeNet300",
    "LeNet5",
    "MLP",
    "ModelSpec",
    "TRUST_EXPORTED_ENV",
    "available_architectures",
    "build_model",
    "load_exported_program",
    "load_into",
    "meta_model",
    "model_bytes",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mcs.models"
TRUST_EXPORTED_ENV = "MCS_TRUST_EXPORTED_PROGRAMS"


def _registered_entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _torchvision_classifiers() -> list[str]:
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def available_architectures() -> dict[str, list[str]]:
    """Every name `build_model` accepts, grouped by where it comes from."""
    return {
        "builtin": sorted(BUILTIN_MODELS),
        "registered": sorted(_registered_entry_points()),
        "torchvision": _torchvision_classifiers(),
    }


def _as_spec(model_spec: ModelSpec | Mapping[str, Any]) -> ModelSpec:
    if isinstance(model_spec, ModelSpec):
        return model_spec
    if isinstance(model_spec, Mapping):
        return ModelSpec.model_validate(dict(model_spec))
    # another pydantic model with the same fields (e.g. the spec's own copy)
    return ModelSpec(arch=model_spec.arch, kwargs=dict(getattr(model_spec, "kwargs", {}) or {}))


def _factory(spec: ModelSpec) -> tuple[Any, dict[str, Any]]:
    """The constructor a spec names and its kwargs; SpecError for unknown names."""
    name, kwargs = spec.arch, dict(spec.kwargs)
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name], kwargs
    if name in (registered := _registered_entry_points()):
        return registered[name].load(), kwargs
    if name in _torchvision_classifiers():
        import torchvision.models

        if kwargs.pop("weights", None) is not None:
            log.warning("ignoring weights=%r for %s: pretrained weights are never downloaded", name, name)
        return (lambda **kw: torchvision.models.get_model(name, weights=None, **kw)), kwargs
    raise SpecError(
        f"unknown architecture {name!r}: use one of the built-ins {sorted(BUILTIN_MODELS)}, "
        f"a torchvision classifier (e.g. resnet18) or an operator-registered "
        f"'{ENTRY_POINT_GROUP}' entry point"
    )


def meta_model(model_spec: ModelSpec | Mapping[str, Any]) -> nn.Module:
    """The architecture with its parameters on the meta device, sized against the byte budget: names,
    shapes and parameter counts without allocating them (the preflight's fit check)."""
    spec = _as_spec(model_spec)
    factory, kwargs = _factory(spec)
    probe = _probe(factory, spec.arch, kwargs)
    check_bytes(f"model {spec.arch!r} with kwargs {kwargs}", model_bytes(probe), error=SpecError)
    return probe


def build_model(
    model_spec: ModelSpec | Mapping[str, Any], fits: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """Build a freshly initialised model from its name and kwargs; raises SpecError for unknown names.

    With `fits` (the weights it will be loaded with), a model that cannot take them is refused from a
    meta-device probe, before its parameters are allocated."""
    spec = _as_spec(model_spec)
    factory, kwargs = _factory(spec)
    return _call(factory, spec.arch, kwargs, fits)


# constructors that allocate by size: put on the meta device by the second probe; tensors made from
# values (torch.tensor, arange, ...) stay real there, so a constructor that computes its widths with small
# tensors and `.tolist()` (torchvision's RegNet) still builds
_SIZED = (
    torch.empty,
    torch.empty_strided,
    torch.empty_permuted,
    torch.zeros,
    torch.ones,
    torch.full,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.eye,
)


class _AllocationsOnMeta(TorchFunctionMode):
    """Tensors created by size go to the meta device; everything else runs as usual."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _SIZED and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _probe(factory: Any, name: str, kwargs: dict[str, Any]) -> nn.Module:
    """The model the kwargs describe, its parameters and buffers on the meta device (nothing large is
    allocated): first with every tensor on meta, then with only the tensors made by size there (some
    constructors compute with small real tensors). SpecError when neither builds: a model that cannot be
    sized is refused, never built blind (issue 21, item 5)."""
    failures: list[BaseException] = []
    for device in (lambda: torch.device("meta"), _AllocationsOnMeta):
        try:
            with device():
                probe = factory(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the next probe, or the refusal below, names it
            failures.append(exc)
            continue
        if not isinstance(probe, nn.Module):
            raise SpecError(f"architecture {name!r} did not return a torch.nn.Module")
        return probe
    last = failures[-1]
    if isinstance(last, TypeError | ValueError):  # the kwargs are wrong: a real build fails the same way
        raise SpecError(f"cannot build {name!r} with kwargs {kwargs}: {last}") from last
    raise SpecError(
        f"architecture {name!r} with kwargs {kwargs} cannot be sized before it is built (its constructor "
        f"fails on the meta device: {type(last).__name__}: {str(last)[:200]}); refused rather than built "
        "without knowing its size"
    ) from last


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers (meta tensors included: their declared size)."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _call(
    factory: Any, name: str, kwargs: dict[str, Any], fits: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    # e.g. sizes=[8, 20000000, 3] must not allocate 0.9 GB before it is refused
    probe = _probe(factory, name, kwargs)
    check_bytes(f"model {name!r} with kwargs {kwargs}", model_bytes(probe), error=SpecError)
    if fits is not None:
        check_fits(probe, fits)
    del probe
    try:
        model = factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"cannot build {name!r} with kwargs {kwargs}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise SpecError(f"architecture {name!r} did not return a torch.nn.Module")
    return model


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a state dict strictly; a mismatch raises InputError naming every missing, unexpected or
    mis-shaped key (more useful than torch's first-error message when an upload does not fit the arch)."""
    check_fits(model, state_dict)
    model.load_state_dict(dict(state_dict), strict=True)
    return model


def check_fits(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """InputError naming every missing, unexpected or mis-shaped key, when `state_dict` does not fit."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    misshaped = sorted(
        f"{k} (model {tuple(expected[k].shape)}, file {tuple(state_dict[k].shape)})"
        for k in expected
        if k in state_dict and tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or misshaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
                parts.append(f"{label} keys: {shown}")
        raise InputError("state dict does not fit the model: " + "; ".join(parts))


def exported_programs_trusted() -> bool:
    return os.environ.get(TRUST_EXPORTED_ENV, "") == "1"


def load_exported_program(path: str | Path) -> nn.Module:
    """Load a `.pt2` torch.export archive, only when the operator trusts uploads (see module docstring)."""
    if not exported_programs_trusted():
        raise InputError(
            f"{Path(path).name}: exported programs (.pt2) are refused because torch.export.load unpickles "
            f"data and could run code; an operator can allow trusted uploads with {TRUST_EXPORTED_ENV}=1. "
            "Upload a state dict (.safetensors) and name the architecture in the spec instead"
        )
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # any failure of a foreign archive is an input problem
        raise InputError(f"{Path(path).name}: not a loadable torch.export program: {exc}") from exc
    return program.module()
