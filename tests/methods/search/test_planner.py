"""The planner against synthetic trials: grids, k-section on a monotone parameter, Optuna rounds."""

from __future__ import annotations

import math
import random

import pytest

from compression_core.methods.search.pareto import dominates, pareto_front
from compression_core.methods.search.planner import grid_points, plan_next
from compression_core.methods.search.spec import SearchSpec
from compression_core.methods.search.trials import TrialResult
from compression_core.spec import Spec

BASE = Spec.model_validate(
    {
        "model": {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}},
        "data": {"builtin": "digits"},
        "rules": [
            {
                "select": {"name": "*.weight"},
                "steps": [{"type": "prune", "sparsity": 0.5}, {"type": "quantize", "k": 8}],
            }
        ],
    }
).model_dump(mode="json")
S, K = "rules.0.steps.0.sparsity", "rules.0.steps.1.k"


def test_grid_and_zip_points() -> None:
    grid = SearchSpec(mode="grid", parameters={S: [0.5, 0.9], K: [4, 8, 16]})
    assert len(grid_points(grid)) == 6 and grid_points(grid)[1] == {S: 0.5, K: 8}
    zipped = SearchSpec(mode="grid", parameters={S: [0.5, 0.9], K: [4, 8]}, combine="zip")
    assert grid_points(zipped) == [{S: 0.5, K: 4}, {S: 0.9, K: 8}]
    plan = plan_next(grid, BASE, [], slots=1)
    assert len(plan.trials) == 6  # a grid goes out at once, whatever the number of workers
    assert plan.trials[5].spec["rules"][0]["steps"][1]["k"] == 16


def simulate(spec: SearchSpec, measure, slots: int) -> list[TrialResult]:
    done: list[TrialResult] = []
    while not (plan := plan_next(spec, BASE, done, slots)).finished:
        assert len(done) < 1000, "the planner never finishes"  # a bound, as every loop in the tests has
        assert len(plan.trials) <= max(2, slots)
        for trial in plan.trials:
            ratio, val_error = measure(trial.parameters)
            done.append(
                TrialResult(
                    len(done),
                    trial.parameters,
                    "succeeded",
                    ratio=ratio,
                    error_after=val_error,
                    validation_error_before=0.02,
                    validation_error_after=val_error,
                    error_before=0.02,
                )
            )
    return done


@pytest.mark.parametrize("slots", [1, 3])
def test_bisection_finds_the_threshold_of_a_monotone_parameter(slots: int) -> None:
    threshold = 0.873  # error rises past the budget above this sparsity

    def measure(p):
        s = p[S]
        return 1 / (1 - s), 0.02 + (0.05 if s > threshold else 0.005 * s)

    spec = SearchSpec(
        mode="budget", parameters={S: {"low": 0.5, "high": 0.99}}, max_error_increase=1.0, max_trials=12
    )
    done = simulate(spec, measure, slots)
    assert len(done) <= 12
    feasible = [t.parameters[S] for t in done if t.feasible(0.01)]
    assert threshold - 0.03 < max(feasible) <= threshold


def test_bisection_reads_the_direction_from_the_ratios() -> None:
    """Larger k compresses less: the most compressed within budget is the smallest k that is good enough."""

    def measure(p):
        k = p[K]
        return 32 / math.log2(k), 0.02 + (0.0 if k >= 11 else 0.05)

    spec = SearchSpec(
        mode="budget", parameters={K: {"low": 2, "high": 64}}, max_error_increase=0.5, max_trials=12
    )
    done = simulate(spec, measure, 2)
    assert all(isinstance(t.parameters[K], int) for t in done)
    assert min(t.parameters[K] for t in done if t.feasible(0.005)) == 11


def test_optuna_plans_rounds_of_the_free_workers_within_bounds() -> None:
    spec = SearchSpec(
        mode="budget",
        parameters={S: {"low": 0.5, "high": 0.99}, K: {"low": 2, "high": 32}},
        max_error_increase=1.0,
        max_trials=9,
    )
    done = simulate(
        spec, lambda p: (1 / (1 - p[S]) * 32 / math.log2(p[K]), 0.02 + 0.02 * p[S] / math.log2(p[K])), 4
    )
    assert len(done) == 9
    assert all(0.5 <= t.parameters[S] <= 0.99 and 2 <= t.parameters[K] <= 32 for t in done)
    assert len({(t.parameters[S], t.parameters[K]) for t in done}) == 9


def test_the_front_is_exactly_the_non_dominated_trials() -> None:
    rng = random.Random(0)
    trials = [
        TrialResult(i, {}, "succeeded", ratio=rng.uniform(1, 50), error_after=rng.uniform(0, 0.3))
        for i in range(60)
    ]
    trials.append(TrialResult(60, {}, "failed"))
    front = set(pareto_front(trials))
    points = {t.index: (t.ratio, t.error_after) for t in trials if t.ok}
    for i, p in points.items():
        assert (i in front) == (not any(dominates(q, p) for j, q in points.items() if j != i))
    assert 60 not in front
