"""The non-dominated trials: no other trial is both more compressed and at most as wrong."""

from __future__ import annotations

from collections.abc import Sequence

from compression_core.methods.search.trials import TrialResult

__all__ = ["dominates", "pareto_front"]


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(ratio, error) a dominates b: at least as compressed, at most as wrong, better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_front(trials: Sequence[TrialResult], *, validation: bool = False) -> list[int]:
    """Indices (TrialResult.index) of the successful trials no other successful trial dominates, by
    test error (what is reported) or, with `validation`, by validation error; without labels by the loss
    of top-1 agreement with the upload (or its relative output error). Sorted by ratio."""
    points = []
    for t in trials:
        error = t.validation_error_after if validation else t.error_after
        if error is None:  # no labels: how far from the upload, in the budget's measure
            error = t.validation_increase if validation else _test_increase(t)
        if t.ok and t.ratio is not None and error is not None:
            points.append((t.index, (t.ratio, error)))
    front = [i for i, p in points if not any(dominates(q, p) for _, q in points)]
    order = {i: p[0] for i, p in points}
    return sorted(front, key=lambda i: order[i])


def _test_increase(t: TrialResult) -> float | None:
    """`validation_increase` on the test split (the fidelity a trial reported in `evaluation.after`)."""
    if t.measure == "perplexity":
        after, before = t.perplexity_after, t.perplexity_before
        return None if after is None or before is None else after - before
    if t.measure == "output_error" or t.agreement_after is None:
        return t.output_error_after
    return 1.0 - t.agreement_after
