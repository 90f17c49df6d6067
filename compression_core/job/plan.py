"""A job's plan, decided once from the spec and the model source: which stages run, on which device,
streamed or in memory. The plan is data: `mcs check` prints it (and `--json` gives `Plan.to_dict()`), the
pipeline (`job/pipeline.py`) runs it, and no stage asks again what the input was or which methods the spec
names.

Stages, in the order they run:
- `outer`: a method that runs the rest of the spec itself (a search: each trial is a job of its own);
- `prepare`: whole-model methods that change the model before it is compressed (distillation);
- `structured`: physical structured pruning (Torch-Pruning) of the trainable module, before training;
- `retrain`: the one whole-model method that trains while compressing (`lc`, `sws`, `retrain`; a
  data-aware job naming none runs the registry's fallback, retraining with nothing to retrain);
- `compress`: the rules' per-tensor steps (within `retrain` when there is one), then encoding;
- `deploy`: `architecture.json`, the exports and the registry's deploy-stage methods (`int8`) on the
  written model, and the deployment table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from compression_core.errors import SpecError
from compression_core.methods import registry
from compression_core.methods.base import CompressMethod, DeployMethod, PrepareMethod
from compression_core.methods.outer import OuterMethod
from compression_core.sources import ModelSource
from compression_core.spec.model import SpecBase as Spec

__all__ = ["Mode", "Plan", "Stage", "plan_job"]


class Mode(StrEnum):
    outer = "outer"  # an outer method runs the job (its trials are planned again, each on its own)
    streamed = "streamed"  # data-free, one tensor at a time: memory follows the largest tensor
    in_memory = "in_memory"  # the whole model in memory (data-aware jobs, steps ranking a whole rule)


@dataclass(frozen=True)
class Stage:
    kind: str  # outer | prepare | structured | retrain | compress | deploy
    names: tuple[str, ...]  # the methods or steps it runs
    note: str = ""


@dataclass(frozen=True)
class Plan:
    source: dict[str, Any]  # `ModelSource.describe()`: kind, input, module, streamable
    mode: Mode
    device: str
    workers: int | None  # threads compressing tensors at once (streamed jobs)
    stages: tuple[Stage, ...] = field(default_factory=tuple)

    def stage(self, kind: str) -> Stage | None:
        return next((s for s in self.stages if s.kind == kind), None)

    def names(self, kind: str) -> tuple[str, ...]:
        found = self.stage(kind)
        return found.names if found is not None else ()

    def runs(self, kind: str) -> bool:
        return self.stage(kind) is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": dict(self.source),
            "mode": self.mode.value,
            "device": self.device,
            "workers": self.workers,
            "stages": [{"stage": s.kind, "runs": list(s.names), "note": s.note} for s in self.stages],
        }

    def lines(self) -> list[str]:
        """The plan in a few plain lines (logs, `mcs check`)."""
        source = self.source
        head = f"{source['input']} ({source['kind']}): {self.mode.value} on {self.device}"
        if self.workers is not None:
            head += f", {self.workers} workers"
        out = [head]
        for stage in self.stages:
            text = f"  {stage.kind:<10} {', '.join(stage.names) or '-'}"
            out.append(f"{text}  ({stage.note})" if stage.note else text)
        return out


def _steps(spec: Spec) -> tuple[str, ...]:
    seen: list[str] = []
    for rule in spec.rules:
        for step in rule.steps:
            if step.type not in seen:
                seen.append(step.type)
    return tuple(seen)


def plan_job(spec: Spec, source: ModelSource, *, device: str = "cpu", workers: int | None = None) -> Plan:
    """The plan for `spec` on `source` (reads nothing from the source's files)."""
    present = registry.present_methods(spec)
    described = source.describe()
    outer = [m.name for m, _ in present if isinstance(m, OuterMethod)]
    if outer:
        note = "runs the rest of the spec itself, as trials planned one by one"
        return Plan(described, Mode.outer, device, None, (Stage("outer", (outer[0],), note),))
    steps = _steps(spec)
    data_aware = registry.needs_data(spec)
    from compression_core.streaming.pipeline import streamable
    from compression_core.streaming.pool import default_workers

    if source.streamable and streamable(spec):  # data-free, and every whole-rule step streams
        stage = Stage("compress", steps, "per tensor, streamed")
        return Plan(described, Mode.streamed, device, workers or default_workers(), (stage,))
    if not data_aware:
        stage = Stage("compress", steps, "per tensor, whole model in memory")
        return Plan(described, Mode.in_memory, device, None, (stage,))
    stages: list[Stage] = []
    prepare = tuple(m.name for m, _ in present if isinstance(m, PrepareMethod))
    if prepare:
        stages.append(Stage("prepare", prepare, "changes the model first"))
    deploy = source.has_module and source.deployable  # data-aware with a deployable module
    if deploy and "structured" in steps:
        stages.append(Stage("structured", ("structured",), "physical, before training"))
    main = tuple(m.name for m, _ in present if isinstance(m, CompressMethod))
    if len(main) > 1:
        raise SpecError(f"methods {list(main)} each compress the model; give one of them")
    if main:
        stages.append(Stage("retrain", main, "trains while compressing"))
    else:
        fallback = (registry.fallback().name,)
        stages.append(Stage("retrain", fallback, "none named: the fallback, evaluation around the steps"))
    stages.append(Stage("compress", steps, "per tensor"))
    if deploy:
        formats = [f.value for f in spec.export_formats]
        later = tuple(m.name for m, _ in present if isinstance(m, DeployMethod))
        note = "architecture.json" + "".join(f", {f}" for f in formats) + ", deployment table"
        stages.append(Stage("deploy", later, note))
    return Plan(described, Mode.in_memory, device, None, tuple(stages))
