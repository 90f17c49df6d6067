"""The up-front check of a search costs a bounded amount of work (issue 21, item 4): a budget search
validates a sample of the values it can probe (every parameter at once), each distinct trial spec is
validated once, and a search whose trials x (rules + patterns) is too much to validate is refused."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

import compression_core.methods.search.paths as paths
from compression_core.spec import Spec

RULES = 1000


def base(rules: int = RULES) -> dict[str, Any]:
    return {
        "model": {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}},
        "data": {"builtin": "digits"},
        "rules": [
            {
                "select": {"name": [f"layer{i}.*", f"block{i}.*"]},
                "steps": [{"type": "prune", "sparsity": 0.5}, {"type": "quantize", "k": 8}],
            }
            for i in range(rules)
        ],
    }


def budget_search(values: int = 256, parameters: int = 16) -> dict[str, Any]:
    grid = {
        f"rules.{i}.steps.0.sparsity": [round(0.05 + 0.9 * j / values, 6) for j in range(values)]
        for i in range(parameters)
    }
    return {**base(), "search": {"mode": "budget", "parameters": grid, "max_error_increase": 1.0}}


class Counted:
    """Counts the trial specs the check builds; stops a run-away check (as on main) at `stop`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, stop: int = 200) -> None:
        self.calls: list[dict[str, Any]] = []
        self.stop = stop
        original = paths.trial_spec

        def counted(spec: Any, assignment: Any) -> dict[str, Any]:
            self.calls.append(dict(assignment))
            if len(self.calls) > self.stop:
                raise AssertionError(f"more than {self.stop} trial specs built to check one search")
            return original(spec, assignment)

        monkeypatch.setattr(paths, "trial_spec", counted)


def test_a_16_by_256_budget_search_validates_a_small_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = Counted(monkeypatch)
    spec = budget_search()
    started = time.process_time()
    Spec.model_validate(spec)
    seconds = time.process_time() - started
    print(f"16 x 256 budget search over {RULES} rules checked in {seconds:.2f} s of CPU, "
          f"{len(counted.calls)} trial specs")  # fmt: skip
    assert len(counted.calls) <= 8
    assert all(len(call) == 16 for call in counted.calls)  # every parameter in every probe
    for path, values in spec["search"]["parameters"].items():  # the ends are always probed
        assert {call[path] for call in counted.calls} >= {min(values), max(values)}


def test_a_sampled_budget_probe_still_names_the_path_of_a_refused_end() -> None:
    spec = budget_search(values=64, parameters=3)
    spec["search"]["parameters"]["rules.1.steps.0.sparsity"][-1] = 1.5  # over the maximum
    with pytest.raises(ValidationError, match="rules.1.steps.0.sparsity"):
        Spec.model_validate(spec)
    spec = budget_search(values=64, parameters=3)
    spec["search"]["parameters"]["rules.2.steps.1.k"] = [4, 8, 6.5, 16]  # k is an integer
    with pytest.raises(ValidationError, match="rules.2.steps.1.k"):
        Spec.model_validate(spec)


def test_each_distinct_trial_spec_is_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = Counted(monkeypatch)
    spec = {
        **base(4),
        "search": {"mode": "grid", "parameters": {"rules.0.steps.0.sparsity": [0.5, 0.7, 0.5, 0.7, 0.9]}},
    }
    Spec.model_validate(spec)
    assert sorted(call["rules.0.steps.0.sparsity"] for call in counted.calls) == [0.5, 0.7, 0.9]


def test_a_grid_too_costly_to_validate_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = Counted(monkeypatch)
    spec = {
        **base(),
        "search": {
            "mode": "grid",
            "parameters": {"rules.0.steps.0.sparsity": [round(0.3 + 0.002 * i, 4) for i in range(256)]},
            "max_trials": 256,
        },
    }
    with pytest.raises(ValidationError, match="too much to validate"):
        Spec.model_validate(spec)
    assert counted.calls == []  # refused from its size, before any trial spec is built
