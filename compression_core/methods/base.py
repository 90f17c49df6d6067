"""The method interface: what a per-tensor step and a whole-model method each declare.

Two kinds, in the spirit of torchao (a config class plus one registered transform) and the LC toolkit (one
small interface per compression type):

- a per-tensor step (`StepSpec`): a pydantic model with `type: Literal[...]`, the steps it may follow
  (`after`), and a function `apply(step, work, context)` that turns the tensor in `work` into what the
  record stores (positions, values, codebook, factors);
- a whole-model method (`MethodSpec`): its top-level spec field, what it needs (`model`, `data`), what it
  excludes, the extra upload roles it takes (e.g. `teacher`), registered as one of four kinds, one per
  stage of a job, each with its own typed call:
  `PrepareMethod` / `CompressMethod`: `run(config, job, compress) -> Outcome` (changes the model first /
  trains while compressing); `DeployMethod`: `run(config, stage, out_dir) -> section` on the written model;
  `OuterMethod` (`methods/outer.py`): a driver that plans child jobs, which the worker fans out over the
  workers and the library runs one after another.

The implementations are named by `"module:function"` strings and imported at first use, so building the
spec's JSON Schema imports pydantic models only (no torch). See docs/methods.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # the spec side (schemas) stays torch-free
    from pathlib import Path

    import torch

    from compression_core.records import TensorRecord

# The job's context (`compression_core.job.context.JobContext`) and deployment stage
# (`compression_core.deploy.stage.DeployStage`), not imported even for type checking: both import the spec,
# which is assembled from this module (the architecture test counts every import).
JobContext = Any
DeployStage = Any

__all__ = [
    "CompressFn",
    "CompressMethod",
    "DeployMethod",
    "MethodSpec",
    "ModelMethod",
    "Outcome",
    "PrepareMethod",
    "StepContext",
    "StepMethod",
    "StepSpec",
    "Work",
    "resolve",
]

CompressFn = Callable[..., tuple[list["TensorRecord"], dict[str, Any]]]  # (state_dict, spec, span=...)


class _Strict(BaseModel):
    # as compression_core.spec.base.Strict; not imported from there, because importing the spec package
    # assembles the Spec model from the registry, which imports this module
    model_config = ConfigDict(extra="forbid")


class StepSpec(_Strict):
    """A per-tensor step's spec model; subclasses set `type: Literal["name"] = "name"`."""

    type: str
    after: ClassVar[frozenset[str]] = frozenset()  # step types this one may follow (empty: first only)


class MethodSpec(_Strict):
    """A whole-model method's spec model (the value of its top-level field)."""

    field: ClassVar[str]  # the top-level spec key, e.g. "lc"
    title: ClassVar[str]  # for messages, e.g. "the LC algorithm"
    description: ClassVar[str] = ""  # the field's description in the JSON Schema
    needs: ClassVar[tuple[str, ...]] = ("model", "data")  # top-level fields it needs
    excludes: ClassVar[tuple[str, ...]] = ()  # top-level method fields it cannot combine with
    inputs: ClassVar[tuple[str, ...]] = ()  # extra upload roles, e.g. ("teacher",)
    # runs on a Hugging Face checkpoint (`"model": {"hf": true}`, compression_core/sources/hf): token-id data,
    # perplexity, no ONNX deployment; a method without it is refused for such a model when the spec is checked
    hf: ClassVar[bool] = False
    fallback: ClassVar[bool] = (
        False  # the method data-aware jobs run (with defaults) when the spec names none
    )
    requirement: ClassVar[str] = ""  # message when a need is missing (default: generated)
    exclusion: ClassVar[str] = ""  # message when an excluded field is present (default: generated)

    # checks that need the whole spec: "module:function" taking the validated spec and raising ValueError
    # (named, not imported, like `run`: the function may use modules that import this spec class)
    checker: ClassVar[str] = ""

    def check(self, spec: Any) -> None:
        """Run `checker` on the whole spec; called when the spec is validated."""
        if self.checker:
            resolve(self.checker)(spec)


@dataclass
class StepContext:
    """What a step may know beyond its tensor: the name, the rule's label, κ of a global rule, the device."""

    name: str
    label: str
    keep: int | None = None  # κ from a global ranking (overrides the prune step's own)
    device: str = "cpu"


@dataclass
class Work:
    """One tensor on its way to a record: the tensor, the values still to store (flat) and the record."""

    tensor: torch.Tensor  # on the job's device, original shape
    values: torch.Tensor  # flat values the next step works on (all entries, or the kept ones)
    record: TensorRecord


@dataclass
class Outcome:
    """What a whole-model method hands back; `job.outcome` turns it into metrics.json (in one place)."""

    records: list[TensorRecord] | None = None  # every tensor in state-dict order (None: a "prepare" method)
    rules: dict[str, str | None] = field(default_factory=dict)  # tensor -> the label of what compressed it
    seconds: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # metrics.json's `training`
    section: dict[str, Any] | None = None  # metrics.json's section under the method's field


StepApply = Callable[[Any, Work, StepContext], bool | None]  # False: the step had nothing to do


def resolve(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """A callable given directly, or named as "package.module:function" and imported now."""
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    target: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return target


@dataclass(frozen=True)
class StepMethod:
    """A registered per-tensor step.

    `apply(step, work, context)` stores what it computed in `work.record` / `work.values`; `shared`
    (optional) computes per-tensor κ over all tensors of a rule before the tensors are compressed one by
    one (global pruning); `shared_streaming` (optional) computes the same from tensor sizes, a loader
    and a map function without holding the weights (streaming jobs; a step with `shared` but without it
    makes a data-free job load the model); `report(job, model, metrics)` (optional) adds a section after
    the job's decoded model is evaluated (the structured step's smaller model)."""

    spec: type[StepSpec]
    apply: str | StepApply
    shared: str | Callable[..., dict[str, int]] | None = None
    shared_streaming: str | Callable[..., dict[str, int]] | None = None
    report: str | Callable[..., None] | None = None

    @property
    def name(self) -> str:
        return str(self.spec.model_fields["type"].default)


JobRun = Callable[[Any, "JobContext", CompressFn], Outcome]  # (config, job, compress) -> Outcome
DeployRun = Callable[[Any, "DeployStage", "Path"], dict[str, Any]]  # (config, stage, out_dir) -> section


@dataclass(frozen=True)
class ModelMethod:
    """A registered whole-model method; registered as one of its four kinds (`stage` says which):
    `PrepareMethod`, `CompressMethod`, `DeployMethod` below and `OuterMethod` (`methods/outer.py`)."""

    spec: type[MethodSpec]
    stage: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return self.spec.field


@dataclass(frozen=True)
class PrepareMethod(ModelMethod):
    """Runs first and changes the model (distillation): `run(config, job, compress) -> Outcome` with no
    records; the rules and the compress method then work on the changed model."""

    run: str | JobRun
    stage: ClassVar[str] = "prepare"

    def prepare(self, config: Any, job: JobContext, compress: CompressFn) -> Outcome:
        outcome: Outcome = resolve(self.run)(config, job, compress)
        return outcome


@dataclass(frozen=True)
class CompressMethod(ModelMethod):
    """Trains while compressing (retrain, LC, SWS): `run(config, job, compress) -> Outcome` with the records
    of every tensor. A job runs one; the one whose spec says `fallback` runs when a data-aware spec names
    none."""

    run: str | JobRun
    stage: ClassVar[str] = "compress"

    def compress(self, config: Any, job: JobContext, compress: CompressFn) -> Outcome:
        outcome: Outcome = resolve(self.run)(config, job, compress)
        assert outcome.records is not None, f"{self.name}: a compress method returns the records"
        return outcome


@dataclass(frozen=True)
class DeployMethod(ModelMethod):
    """Runs in the deployment stage on the written model (int8): `run(config, stage, out_dir) -> section`
    (metrics.json's `deployment.<field>`); `stage` is the job's `DeployStage`."""

    run: str | DeployRun
    stage: ClassVar[str] = "deploy"

    def deploy(self, config: Any, stage: DeployStage, out_dir: Path) -> dict[str, Any]:
        section: dict[str, Any] = resolve(self.run)(config, stage, out_dir)
        return section
