"""Running a data-aware job's whole-model methods, as the registry declares them.

"prepare" methods (distillation) run first on the first half of the progress span and change the model;
then the one "compress" method the spec names (`retrain`, `lc`, `sws`, ...) or, when it names none, the
registry's fallback (retraining with nothing to retrain: evaluation around the rules' data-free steps). The
job's plan (`job/plan.py`) names them; this module only runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compression_core.job.context import JobContext
from compression_core.job.outcome import assemble
from compression_core.methods import registry
from compression_core.methods.base import CompressFn, ModelMethod, resolve
from compression_core.records import TensorRecord

__all__ = ["run_methods"]


def _configured(job: JobContext, name: str) -> tuple[ModelMethod, Any]:
    method = registry.model_method(name)
    config = job.spec.method(name)
    return method, config if config is not None else method.spec()  # the fallback, with its defaults


def run_methods(
    job: JobContext, compress: CompressFn, prepare_names: Sequence[str], main_name: str
) -> tuple[list[TensorRecord], dict[str, Any]]:
    """Records of the whole state dict after the plan's "prepare" methods and its one "retrain" method (the
    registry's fallback when the spec names none), and their metrics. "deploy" methods (int8) run in the
    deployment stage, after model.pth is written (deploy/stage.py)."""
    prepare = [_configured(job, name) for name in prepare_names]
    main = [_configured(job, main_name)]
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
