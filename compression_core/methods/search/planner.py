"""Which trials to run next, from the search spec and the trials finished so far.

The planner is a pure function of what is recorded (the service rebuilds it from the database after each
round), so a duplicate or late continuation plans the same thing again:
- grid: every point at once (the workers take them as they come free);
- budget, one parameter: k-section (bisection with k = the free workers) of the bracket between the most
  compressed trial within budget and the least compressed one over it; the parameter is assumed monotone
  in compression, its direction read from the measured ratios;
- budget, several parameters: Optuna's TPE sampler (constant liar for the parallel asks), rebuilt from the
  recorded trials each round; objective: 100 + log(ratio) within budget, minus the excess points over it;
- sensitivity: see sensitivity.py.
An empty plan means the search is finished.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from compression_core.methods.search import lm_sensitivity, sensitivity
from compression_core.methods.search.paths import trial_spec
from compression_core.methods.search.spec import Combine, Range, SearchMode, SearchSpec
from compression_core.methods.search.trials import Number, PlannedTrial, TrialResult, Value

__all__ = ["Plan", "grid_points", "plan_next"]

log = logging.getLogger(__name__)

FLOAT_TOLERANCE = 1e-3  # a float bracket narrower than this share of the range is converged


@dataclass
class Plan:
    trials: list[PlannedTrial] = field(default_factory=list)
    note: str = ""

    @property
    def finished(self) -> bool:
        return not self.trials


def grid_points(search: SearchSpec) -> list[dict[str, Value]]:
    """Every assignment of a grid search, in a stable order (the first parameter varies slowest)."""
    paths = list(search.parameters)
    lists: list[list[Value]] = [list(v) for v in search.parameters.values() if isinstance(v, list)]
    combos = zip(*lists, strict=True) if search.combine is Combine.zip else itertools.product(*lists)
    return [dict(zip(paths, combo, strict=True)) for combo in combos]


PROBES = 8  # values per parameter the up-front check of a budget search validates


def _sample(values: list[Number], count: int = PROBES) -> list[Number]:
    """A budget search may probe any listed value; the check validates the ends, one whole and one
    fractional value when the list mixes them (an integer field refuses 6.5), and evenly spaced others."""
    distinct = sorted(set(values))
    if len(distinct) <= count:
        return distinct
    whole = [v for v in distinct if float(v).is_integer()]
    fractional = [v for v in distinct if not float(v).is_integer()]
    picks = [distinct[0], distinct[-1], *(group[0] for group in (whole, fractional) if whole and fractional)]
    spread = [distinct[round(j * (len(distinct) - 1) / (count - 1))] for j in range(count)]
    chosen = list(dict.fromkeys([*picks, *spread]))[:count]
    return sorted(chosen)


def _number(value: Value) -> Number:
    """A budget search's value: a number (the spec refuses strings outside a grid)."""
    if isinstance(value, str):
        raise ValueError("a budget search takes numbers only")
    return value


def _numbers(values: list[Number] | list[str] | Range) -> list[Number] | Range:
    return values if isinstance(values, Range) else [_number(v) for v in values]


def budget_probe_points(search: SearchSpec) -> list[dict[str, Value]]:
    """What the up-front check of a budget search validates: every parameter at once, at the ends of its
    range or at a sample of its listed values (`_sample`), so at most PROBES trial specs however many
    parameters and values (16 x 256 values used to be 4,096 specs, 92 s of CPU over 1,000 rules)."""
    samples = {
        path: [values.low, values.high]
        if isinstance(values, Range)
        else _sample([_number(v) for v in values])
        for path, values in search.parameters.items()
    }
    count = max(len(values) for values in samples.values())
    return [{path: values[min(i, len(values) - 1)] for path, values in samples.items()} for i in range(count)]


def plan_next(
    search: SearchSpec,
    base: dict[str, Any],
    done: Sequence[TrialResult],
    slots: int,
    layers: Sequence[str] | None = None,
) -> Plan:
    """The next round: at most `slots` trials (grid: all), never past `max_trials`."""
    slots = max(1, slots)
    if search.mode is SearchMode.grid:
        if done:
            return Plan(note="grid complete")
        points = grid_points(search)[: search.max_trials]
        return Plan([PlannedTrial(p, trial_spec(base, p)) for p in points], f"grid of {len(points)} points")
    if search.mode is SearchMode.sensitivity:
        hf = bool((base.get("model") or {}).get("hf"))  # a causal LM: per decoder layer, in perplexity
        trials, note = (lm_sensitivity if hf else sensitivity).plan(search, base, done, layers or [])
        return Plan(trials, note)
    room = search.max_trials - len(done)
    if room <= 0:
        return Plan(note=f"max_trials={search.max_trials} reached")
    if len(search.parameters) == 1:
        if not done:  # both ends first, whatever the number of workers
            return _bisect(search, base, done, min(max(2, slots), room))
        return _bisect(search, base, done, min(slots, room))
    return _optuna(search, base, done, min(slots, room))


class _Axis:
    """One parameter's domain: a float or integer range (maybe log), or a sorted list of values."""

    def __init__(self, values: list[Number] | Range) -> None:
        self.range = values if isinstance(values, Range) else None
        self.listed = sorted(set(values)) if isinstance(values, list) else []

    @property
    def ends(self) -> tuple[Number, Number]:
        if self.range is not None:
            return self.range.low, self.range.high
        return self.listed[0], self.listed[-1]

    def between(self, a: Number, b: Number, k: int) -> list[Number]:
        """Up to k values strictly between a and b, evenly spaced (geometrically on a log range)."""
        lo, hi = min(a, b), max(a, b)
        if self.range is None:
            inside = [v for v in self.listed if lo < v < hi]
            if len(inside) <= k:
                return inside
            return [inside[round((j + 1) * (len(inside) + 1) / (k + 1)) - 1] for j in range(k)]
        if self.range.log:
            raw = [
                math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * j / (k + 1)) for j in range(1, k + 1)
            ]
        else:
            raw = [lo + (hi - lo) * j / (k + 1) for j in range(1, k + 1)]
        if self.range.integer:
            return sorted({int(round(v)) for v in raw} - {int(lo), int(hi)})
        return raw

    def converged(self, a: Number, b: Number) -> bool:
        if self.range is None or self.range.integer:
            return not self.between(a, b, 1)
        low, high = self.ends
        return abs(b - a) <= FLOAT_TOLERANCE * abs(high - low)

    def first_round(self, k: int) -> list[Number]:
        low, high = self.ends
        if k <= 1:
            return [high]
        return [low, *self.between(low, high, k - 2), high]


def _bisect(search: SearchSpec, base: dict[str, Any], done: Sequence[TrialResult], k: int) -> Plan:
    ((path, values),) = search.parameters.items()
    axis = _Axis(_numbers(values))
    budget = search.budget_fraction
    tried = {t.parameters.get(path) for t in done}
    if not done:
        points = axis.first_round(k)
        return _make(base, path, points, f"bisection of {path}: the ends first ({len(points)} points)")
    ok = [t for t in done if t.ok]
    if not ok:
        return Plan(note="no trial succeeded; nothing to narrow")
    by_value = sorted(ok, key=lambda t: t.parameters[path])
    rising = len(by_value) < 2 or (by_value[-1].ratio or 0) >= (by_value[0].ratio or 0)
    order = (lambda t: t.parameters[path]) if rising else (lambda t: -t.parameters[path])
    feasible = [t for t in ok if t.feasible(budget)]
    if not feasible:
        return Plan(note=f"no trial within budget; the least compressed end of {path} is over it")
    best = max(feasible, key=order)
    above = [t for t in ok if not t.feasible(budget) and order(t) > order(best)]
    if not above:
        return Plan(note=f"the most compressed trial tried is within budget ({path}={best.parameters[path]})")
    worst = min(above, key=order)
    a, b = _number(best.parameters[path]), _number(worst.parameters[path])
    if axis.converged(a, b):
        return Plan(note=f"bracket converged: {path} in [{a}, {b}]")
    points = [v for v in axis.between(a, b, k) if v not in tried]
    if not points:
        return Plan(note=f"bracket converged: {path} in [{a}, {b}]")
    return _make(base, path, points, f"bisection of {path}: within budget at {a}, over at {b}")


def _make(base: dict[str, Any], path: str, points: list[Number], note: str) -> Plan:
    return Plan([PlannedTrial({path: v}, trial_spec(base, {path: v})) for v in points], note)


def _objective(trial: TrialResult, budget: float | None) -> float | None:
    if not trial.ok or trial.ratio is None or trial.ratio <= 0:
        return None
    increase = trial.validation_increase
    if budget is None or increase is None:
        return None
    if increase <= budget + 1e-12:
        return 100.0 + math.log(trial.ratio)
    return -100.0 * (increase - budget)


def _optuna(search: SearchSpec, base: dict[str, Any], done: Sequence[TrialResult], k: int) -> Plan:
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions: dict[str, BaseDistribution] = {}
    for path, values in search.parameters.items():
        if isinstance(values, list):
            distributions[path] = CategoricalDistribution(sorted(set(values)))
        elif values.integer:
            distributions[path] = IntDistribution(int(values.low), int(values.high), log=values.log)
        else:
            distributions[path] = FloatDistribution(float(values.low), float(values.high), log=values.log)
    startup = min(10, max(2, search.max_trials // 3))
    sampler = optuna.samplers.TPESampler(
        seed=search.seed + len(done), n_startup_trials=startup, constant_liar=True
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for trial in done:
        params = {p: trial.parameters[p] for p in distributions if p in trial.parameters}
        if len(params) != len(distributions):
            continue
        value = _objective(trial, search.budget_fraction)
        state = TrialState.COMPLETE if value is not None else TrialState.FAIL
        study.add_trial(create_trial(params=params, distributions=distributions, value=value, state=state))
    asked = [study.ask(distributions).params for _ in range(k)]
    trials = [PlannedTrial(dict(p), trial_spec(base, p)) for p in asked]
    return Plan(trials, f"Optuna TPE over {len(distributions)} parameters ({len(done)} told, {k} asked)")
