"""Running a data-aware job's whole-model methods, as the registry declares them.

"prepare" methods (distillation) run first on the first half of the progress span and change the model;
then the one "compress" method the spec names (`retrain`, `lc`, `sws`, ...) or, when it names none, the
registry's fallback (retraining with nothing to retrain: evaluation around the rules' data-free steps).
"""

from __future__ import annotations

from typing import Any

from compression_core.errors import SpecError
from compression_core.job.context import JobContext
from compression_core.job.outcome import assemble
from compression_core.methods import registry
from compression_core.methods.base import CompressFn, ModelMethod, resolve
from compression_core.records import TensorRecord

__all__ = ["run_methods"]


def run_methods(job: JobContext, compress: CompressFn) -> tuple[list[TensorRecord], dict[str, Any]]:
    """Records of the whole state dict after the spec's methods, and their metrics."""
    present = [(m, c) for m, c in registry.present_methods(job.spec) if m.spec.stage != "outer"]
    prepare = [(m, c) for m, c in present if m.spec.stage == "prepare"]
    main: list[tuple[ModelMethod, Any]] = [(m, c) for m, c in present if m.spec.stage == "compress"]
    # "deploy" methods (int8) run in the deployment stage, after model.pth is written (deploy/stage.py)
    if len(main) > 1:
        raise SpecError(f"methods {[m.name for m, _ in main]} each compress the model; give one of them")
    if not main:
        method = registry.fallback()
        main = [(method, method.spec())]
    lo, hi = job.span
    sections: dict[str, dict[str, Any]] = {}
    if prepare:
        mid = lo + (hi - lo) * 0.5
        width = (mid - lo) / len(prepare)
        for i, (method, config) in enumerate(prepare):
            job.span = (lo + i * width, lo + (i + 1) * width)
            outcome = resolve(method.run)(config, job, compress)
            if outcome.section is not None:
                sections[method.name] = outcome.section
        lo = mid
    method, config = main[0]
    job.span = (lo, hi)
    outcome = resolve(method.run)(config, job, compress)
    if outcome.section is not None:
        sections = {method.name: outcome.section, **sections}
    assert outcome.records is not None, f"{method.name}: a compress method returns the records"
    return outcome.records, assemble(job, outcome, sections)


def report_steps(job: JobContext, model: Any, metrics: dict[str, Any]) -> None:
    """The steps' reports on the decoded model (e.g. the structured step's smaller model)."""
    used = {step.type for rule in job.spec.rules for step in rule.steps}
    for name, method in registry.step_methods().items():
        if name in used and method.report is not None:
            resolve(method.report)(job, model, metrics)
