"""The registry of compression methods: the built-ins plus any an operator installs.

Everything that used to list methods by hand asks here: the spec's step union and allowed step
combinations, the spec's top-level method fields and their checks, `needs_data`, the upload roles the
service accepts, the job's method label and which whole-model method a job runs.

Built-ins live in `compression_core/methods/<name>/`, each package exporting `METHOD`. Operators add methods
through the entry-point group `mcs.methods` (`[project.entry-points."mcs.methods"] mine =
"mypkg.mine:METHOD"`, a `StepMethod`, a `ModelMethod` kind (`PrepareMethod`, `CompressMethod`,
`DeployMethod`, `OuterMethod`) or a list of them), loaded at first use of the
registry. `register` / `unregister` / `reload` change the set at run time; the spec model is rebuilt at its
next use (see `compression_core.spec.assemble`).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from compression_core.methods.base import CompressMethod, MethodSpec, ModelMethod, StepMethod, resolve

if TYPE_CHECKING:
    import torch

__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "BASE_UPLOAD_ROLES",
    "allowed_plans",
    "fallback",
    "generation",
    "method_label",
    "model_method",
    "model_methods",
    "needs_data",
    "present_methods",
    "register",
    "reload",
    "shared_keeps",
    "shared_keeps_streaming",
    "step_method",
    "step_methods",
    "unregister",
    "upload_roles",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mcs.methods"
BUILTINS = (
    "prune",
    "quantize",
    "lowrank",
    "structured",
    "retrain",
    "lc",
    "sws",
    "distill",
    "int8",
    "search",
    "wquant",
)
BASE_UPLOAD_ROLES = ("model", "data")  # every job may send these; methods add theirs (`MethodSpec.inputs`)

_steps: dict[str, StepMethod] = {}
_methods: dict[str, ModelMethod] = {}
_state = {"loaded": False, "generation": 0}
_loading = threading.RLock()


def _add(method: Any, origin: str) -> None:
    if isinstance(method, StepMethod):
        _steps[method.name] = method
    elif isinstance(method, ModelMethod) and method.stage:  # one of the four kinds, not the base
        _methods[method.name] = method
    elif isinstance(method, Iterable) and not isinstance(method, str | bytes):
        for item in method:
            _add(item, origin)
    else:
        raise TypeError(
            f"{origin}: expected a StepMethod, PrepareMethod, CompressMethod, DeployMethod or OuterMethod, "
            f"got {type(method).__name__}"
        )


def _load() -> None:
    if _state["loaded"]:
        return
    with _loading:  # the API's threads ask at once: none may see a half-filled registry
        if _state["loaded"]:
            return
        for name in BUILTINS:
            _add(importlib.import_module(f"compression_core.methods.{name}").METHOD, name)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                _add(ep.load(), f"entry point {ep.name!r}")
            except Exception:  # one broken plugin must not take the built-ins down
                log.exception("cannot load compression method entry point %s = %s", ep.name, ep.value)
        _state["generation"] += 1
        _state["loaded"] = True  # only once every method is in


def register(method: StepMethod | ModelMethod) -> None:
    """Add (or replace) a method; the spec model is rebuilt at its next use."""
    _load()
    _add(method, "register")
    _state["generation"] += 1


def unregister(name: str) -> None:
    """Remove a step or method by name (tests, operators replacing a built-in)."""
    _load()
    _steps.pop(name, None)
    _methods.pop(name, None)
    _state["generation"] += 1


def reload() -> None:
    """Forget every method and load the built-ins and entry points again (e.g. after installing one)."""
    with _loading:
        _steps.clear()
        _methods.clear()
        _state["loaded"] = False
        _load()


def generation() -> int:
    """Changes whenever the set of methods does (the spec model caches on it)."""
    _load()
    return _state["generation"]


def step_methods() -> dict[str, StepMethod]:
    _load()
    return dict(_steps)


def model_methods() -> dict[str, ModelMethod]:
    _load()
    return dict(_methods)


def step_method(name: str) -> StepMethod:
    _load()
    return _steps[name]


def model_method(name: str) -> ModelMethod:
    _load()
    return _methods[name]


def allowed_plans() -> list[tuple[str, ...]]:
    """Every step sequence a rule may run: each step follows one it may follow, none twice."""
    steps = step_methods()
    plans: list[tuple[str, ...]] = []

    def extend(plan: tuple[str, ...]) -> None:
        plans.append(plan)
        for name, method in steps.items():
            if name not in plan and plan[-1] in method.spec.after:
                extend((*plan, name))

    for name in steps:
        extend((name,))
    return plans


def present_methods(spec: Any) -> list[tuple[ModelMethod, MethodSpec]]:
    """The whole-model methods a spec names, in registry order, with their configurations."""
    found = []
    for method in model_methods().values():
        config = getattr(spec, method.name, None)
        if config is not None:
            found.append((method, config))
    return found


def fallback() -> CompressMethod:
    """The method a data-aware job runs when its spec names none (retraining, with nothing to retrain)."""
    for method in model_methods().values():
        if isinstance(method, CompressMethod) and method.spec.fallback:
            return method
    raise LookupError("no registered whole-model method is the fallback")


def needs_data(spec: Any) -> bool:
    """Whether the job builds the model (and loads data): `model`/`data` given, or a method needing them."""
    if getattr(spec, "model", None) is not None or getattr(spec, "data", None) is not None:
        return True
    return any(method.spec.needs for method, _ in present_methods(spec))


def upload_roles() -> tuple[str, ...]:
    """The files a job may upload: the model, the data, and every registered method's extra inputs."""
    roles = list(BASE_UPLOAD_ROLES)
    for method in model_methods().values():
        roles.extend(r for r in method.spec.inputs if r not in roles)
    return tuple(roles)


def method_label(spec: Mapping[str, Any]) -> str:
    """A job's method for metrics labels, from the JSON spec: its whole-model methods (registry order) and its
    step types in first-use order, e.g. `lc+prune+lowrank` or `prune+quantize` (bounded cardinality)."""
    seen = [name for name in model_methods() if spec.get(name) is not None]
    for rule in spec.get("rules") or []:
        for step in rule.get("steps") or []:
            kind = str(step.get("type", "unknown"))
            if kind not in seen:
                seen.append(kind)
    return "+".join(seen)[:64] or "none"


def shared_keeps(
    weights: Mapping[str, torch.Tensor], selections: Mapping[str, Any], device: str | None = None
) -> dict[str, int]:
    """κ per tensor from the steps that decide over a whole rule at once (global pruning); `selections`
    are `compression_core.select.Selection`s (not imported: `select` imports the spec, built from here)."""
    keeps: dict[str, int] = {}
    for method in step_methods().values():
        if method.shared is not None:
            keeps.update(resolve(method.shared)(weights, selections, device))
    return keeps


def shared_keeps_streaming(
    sizes: Mapping[str, int], selections: Mapping[str, Any], load: Callable[[str], torch.Tensor], map_fn: Any
) -> dict[str, int]:
    """`shared_keeps` for streaming jobs: from sizes (name -> numel, reading order), a loader and an ordered
    map, never holding the weights (see `StepMethod.shared_streaming`)."""
    keeps: dict[str, int] = {}
    for method in step_methods().values():
        if method.shared_streaming is not None:
            keeps.update(resolve(method.shared_streaming)(sizes, selections, load, map_fn))
    return keeps
