"""Per-layer sensitivity (Han et al.'s sensitivity figure, Distiller's sensitivity analysis): each selected
layer alone compressed with the chosen rule's step at each value, every other tensor untouched; then one
trial of the suggested per-layer spec: each layer at its most compressed value whose validation error
stays within `max_error_increase` (default 1 point) of the uploaded model's."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from compression_core.errors import SpecError
from compression_core.methods.search.paths import SearchPathError, without_search
from compression_core.methods.search.spec import SearchSpec
from compression_core.methods.search.trials import Number, PlannedTrial, TrialResult

__all__ = ["DEFAULT_TARGET", "plan", "select_layers", "suggest", "table", "validate"]

DEFAULT_TARGET = 1.0  # points, when the search gives no max_error_increase
SUGGESTED = "suggested"
_DEFAULT_FIELDS = {"prune": "sparsity", "structured": "sparsity", "quantize": "k"}
_EXCLUSIVE = {"prune": ("keep", "sparsity", "pattern"), "lowrank": ("rank", "energy", "alpha")}


def target(search: SearchSpec) -> float:
    """The budget as a fraction of its measure (`SearchSpec.budget_fraction`; default: 1 point of error)."""
    if search.budget_measure != "error":
        return float(search.budget_fraction or 0.0)
    return (search.max_error_increase if search.max_error_increase is not None else DEFAULT_TARGET) / 100.0


def _rule(base: Mapping[str, Any], search: SearchSpec) -> dict[str, Any]:
    rules = base.get("rules") or []
    if search.rule >= len(rules):
        raise SearchPathError("rule", f"the spec has {len(rules)} rule(s)", loc=("search", "rule"))
    return copy.deepcopy(rules[search.rule])


def _field_and_step(rule: Mapping[str, Any], search: SearchSpec) -> tuple[int, str]:
    for i, step in enumerate(rule["steps"]):
        name = search.step_field or _DEFAULT_FIELDS.get(step["type"])
        if name is None and step["type"] == "lowrank":
            name = next((n for n in ("energy", "rank", "alpha") if step.get(n) is not None), "rank")
        if name is not None and name in step and name != "type":
            return i, name
    wanted = search.step_field or "sparsity, k, energy or rank"
    raise SearchPathError(
        "step_field", f"no step of rule #{search.rule} has the field {wanted}", loc=("search", "step_field")
    )


def layer_spec(base: Mapping[str, Any], search: SearchSpec, choices: Mapping[str, Number]) -> dict[str, Any]:
    """The spec compressing each named layer at its value with the rule's steps, nothing else."""
    template = _rule(base, search)
    index, name = _field_and_step(template, search)
    rules = []
    for layer, value in choices.items():
        rule = copy.deepcopy(template)
        rule["name"] = layer
        rule["select"] = {"name": layer, "include_bias_and_norm": True}
        step = rule["steps"][index]
        for other in _EXCLUSIVE.get(step["type"], ()):
            if other != name:
                step[other] = None
        step[name] = int(value) if name in ("k", "rank", "keep") else value
        rules.append(rule)
    spec = without_search({key: value for key, value in base.items() if key != "rules"})  # not copied
    spec["rules"] = rules
    return spec


def validate(base: Mapping[str, Any], search: SearchSpec) -> None:
    """Every value on a stand-in layer: a refused value is a 422 naming `search.values` before queueing."""
    from pydantic import ValidationError

    from compression_core.spec import Spec, format_validation_error

    for value in dict.fromkeys(search.values or []):  # each distinct value once
        try:
            Spec.model_validate(layer_spec(base, search, {"layer.weight": value}))
        except ValidationError as error:
            raise SearchPathError(
                "values", f"{value!r} is refused: {format_validation_error(error)}", loc=("search", "values")
            ) from None


def select_layers(state_dict: Mapping[str, Any], base: Mapping[str, Any], search: SearchSpec) -> list[str]:
    """The tensors the chosen rule selects in this model (narrowed by `layers` globs), in model order."""
    from compression_core.select import select_tensors
    from compression_core.spec import Spec

    only = without_search(base)
    only["rules"] = [_rule(base, search)]
    selections = select_tensors(state_dict, Spec.model_validate(only))
    names = [n for n in state_dict if n in selections]
    if search.layers is not None:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in search.layers)]
    if not names:
        raise SpecError(f"search: rule #{search.rule} (narrowed by `layers`) selects no tensor of this model")
    return names


def plan(
    search: SearchSpec, base: dict[str, Any], done: Sequence[TrialResult], layers: Sequence[str]
) -> tuple[list[PlannedTrial], str]:
    if not done:
        values = search.values or []
        count = len(layers) * len(values) + 1
        if count > search.max_trials:
            raise SpecError(
                f"search: {len(layers)} layers x {len(values)} values + the suggested spec = {count} trials, "
                f"more than max_trials={search.max_trials}; raise max_trials or narrow `layers`"
            )
        trials = [
            PlannedTrial({"value": v}, layer_spec(base, search, {layer: v}), label=layer)
            for layer in layers
            for v in values
        ]
        return trials, f"{len(layers)} layers x {len(values)} values"
    if any(t.label == SUGGESTED for t in done):
        return [], "the suggested spec has run"
    choices = suggest(search, done)
    if not choices:
        return [], "no layer stays within the error budget at any value; nothing to suggest"
    spec = layer_spec(base, search, choices)
    return [PlannedTrial({}, spec, label=SUGGESTED)], f"the suggested spec for {len(choices)} layers"


def suggest(search: SearchSpec, done: Sequence[TrialResult]) -> dict[str, Number]:
    """Each layer's most compressed value within the budget on the validation split (layers that meet it
    at no value are left uncompressed)."""
    budget = target(search)
    choices: dict[str, Number] = {}
    best_ratio: dict[str, float] = {}
    for trial in done:
        if trial.label in (None, SUGGESTED) or not trial.feasible(budget):
            continue
        ratio = trial.ratio or 0.0
        if ratio > best_ratio.get(trial.label, -1.0):
            best_ratio[trial.label] = ratio
            value = trial.parameters["value"]
            assert not isinstance(value, str)  # sensitivity values are numbers
            choices[trial.label] = value
    return choices


def table(search: SearchSpec, done: Sequence[TrialResult]) -> dict[str, Any]:
    """Error per layer (rows) and value (columns): validation (chosen on) and test (reported)."""
    layers = list(dict.fromkeys(t.label for t in done if t.label not in (None, SUGGESTED)))
    values = list(search.values or [])
    cells = {(t.label, t.parameters.get("value")): t for t in done}

    def grid(attribute: str) -> list[list[float | None]]:
        return [
            [getattr(cells[(name, v)], attribute, None) if (name, v) in cells else None for v in values]
            for name in layers
        ]

    return {
        "layers": layers,
        "values": values,
        "step_field": search.step_field,
        "validation_error": grid("validation_error_after"),
        "error": grid("error_after"),
        "ratio": grid("ratio"),
        "suggested": suggest(search, done),
        "target_error_increase": target(search),
    }
