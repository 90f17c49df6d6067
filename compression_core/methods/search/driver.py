"""The search as an outer method (`methods/outer.py`): trials are its children. The worker fans them out over
the workers; the library runs them one after another. Both get the same rounds from `plan`, the same
outcome from `finish`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from compression_core.methods.outer import Child, ChildPlan, OuterDriver, Round
from compression_core.methods.search.spec import Holdout, SearchMode, SearchSpec
from compression_core.methods.search.trials import SUCCEEDED, TrialResult

__all__ = ["SearchDriver"]


class SearchDriver(OuterDriver):
    """Grid, budget and sensitivity searches (see the package docstring)."""

    config: SearchSpec

    def __init__(self, config: SearchSpec, spec: dict[str, Any]) -> None:
        super().__init__(config, spec)
        self._layers: list[str] | None = None

    @property
    def hf(self) -> bool:
        """A Hugging Face causal LM: trials measured in perplexity on validation token ids (lm_trial.py)."""
        return bool((self.spec.get("model") or {}).get("hf"))

    @property
    def adaptive(self) -> bool:  # type: ignore[override]
        """A budget search's rounds are as wide as the free workers; a grid plans every point at once."""
        return self.config.mode is SearchMode.budget

    def trials(self, children: Sequence[Child]) -> list[TrialResult]:
        return [
            TrialResult.from_metrics(
                child.index,
                child.record.get("parameters") or {},
                child.state,
                child.metrics if child.state == SUCCEEDED else None,
                label=child.record.get("label"),
                seconds=child.seconds,
                job_id=child.job_id,
                reason=child.reason,
                measure="perplexity" if self.hf else self.config.budget_measure,
            )
            for child in children
        ]

    def _sensitive_layers(self, model_path: Path) -> list[str] | None:
        if self.config.mode is not SearchMode.sensitivity:
            return None
        if self._layers is None and self.hf:  # a causal LM: its decoder layers, from the tensor names
            from compression_core.methods.search import lm_sensitivity
            from compression_core.sources import open_source
            from compression_core.spec.fields import ModelSpec

            with open_source(model_path, ModelSpec.model_validate(self.spec["model"])) as source:
                names = [info.name for info in source.infos]
            self._layers = lm_sensitivity.select_layers(names, self.config)
        if self._layers is None:
            from compression_core.io import load_state_dict
            from compression_core.methods.search import sensitivity

            self._layers = sensitivity.select_layers(load_state_dict(model_path), self.spec, self.config)
        return self._layers

    def plan(self, children: Sequence[Child], slots: int, model_path: Path) -> Round:
        from compression_core.methods.search.planner import grid_points, plan_next

        search = self.config
        layers = self._sensitive_layers(model_path)
        planned = plan_next(search, self.spec, self.trials(children), slots, layers)
        validation = (self.spec.get(search.field) or {}).get("validation") or {}
        records = [
            ChildPlan(t.spec, {"parameters": t.parameters, "label": t.label, "validation": validation})
            for t in planned.trials
        ]
        count = len(children) + len(planned.trials)
        if search.mode is SearchMode.grid:
            total = min(search.max_trials, len(grid_points(search)))
        elif search.mode is SearchMode.sensitivity:
            total = len(layers or []) * len(search.values or []) + 1
        else:
            total = max(count, search.max_trials)
        return Round(records, planned.note, total)

    def progress(self, children: Sequence[Child], total: int) -> tuple[float, str]:
        from compression_core.methods.search.results import choose_best

        trials = self.trials(children)
        finished = [t for t in trials if t.state in ("succeeded", "failed", "cancelled")]
        message = f"{len(finished)}/{total} trials"
        best, _ = choose_best(self.config, finished)
        chosen = next((t for t in trials if t.index == best), None)
        if chosen is not None and chosen.ratio is not None and chosen.error_after is not None:
            message += f"; best so far: {chosen.ratio:.2f}x at {100 * chosen.error_after:.2f}% test error"
        elif chosen is not None and chosen.ratio is not None and chosen.perplexity_after is not None:
            message += f"; best so far: {chosen.ratio:.2f}x at test perplexity {chosen.perplexity_after:.3f}"
        elif chosen is not None and chosen.ratio is not None and chosen.agreement_after is not None:
            message += (
                f"; best so far: {chosen.ratio:.2f}x at {100 * chosen.agreement_after:.2f}% top-1 agreement"
            )
        return min(0.99, len(finished) / max(1, total)), message

    def finish(
        self,
        children: Sequence[Child],
        child_dir: Callable[[int], Path],
        out_dir: Path,
        *,
        trace: Sequence[dict[str, Any]],
        note: str,
    ) -> dict[str, Any]:
        from compression_core.methods.search.run import finalize

        return finalize(
            self.config, self.trials(children), child_dir, out_dir, trace=trace, note=note, base=self.spec
        )

    def summary(self, metrics: Mapping[str, Any], children: Sequence[Child]) -> str:
        section = metrics[self.config.field]
        met = (section.get("budget") or {}).get("met")
        return f"{len(children)} trials; best #{section['best']}" + (
            "" if met is None else ("; within budget" if met else "; NO trial met the budget")
        )

    def run_child(
        self, model_path: Path, spec: Any, out_dir: Path, *, record: Mapping[str, Any], **options: Any
    ) -> dict[str, Any]:
        from compression_core.methods.search.trial import run_trial

        holdout = Holdout.model_validate(record.get("validation") or {})
        search = self.config
        if getattr(spec.model, "hf", False):  # a Hugging Face causal LM: chosen on validation token ids
            from compression_core.methods.search.lm_trial import run_lm_trial

            return run_lm_trial(model_path, spec, out_dir, holdout, **options)
        labels = search.budget_measure == "error" and search.budget_fraction is not None
        return run_trial(model_path, spec, out_dir, holdout, needs_labels=labels, **options)
