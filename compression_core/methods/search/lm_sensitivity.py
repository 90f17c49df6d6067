"""Sensitivity per decoder layer of a Hugging Face causal LM (`model.hf` with `wquant`): each decoder layer
alone quantized with the spec's `wquant` (`wquant.only` = that layer's linears, every other layer float) at
each of `values` (of `step_field`, default `bits`), its perplexity increase over the upload's measured on the
validation token ids (`lm_trial.py`); then one trial of the suggested spec: the spec's `wquant` on every
layer, except that the layers whose increase at the spec's own value is over `max_perplexity_increase` stay
float (`wquant.ignore`).

```json
"wquant": {"bits": 4, "group_size": 32},
"search": {"mode": "sensitivity", "values": [2, 3, 4], "max_perplexity_increase": 0.5}
```
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from compression_core.errors import SpecError
from compression_core.methods.search.paths import SearchPathError, without_search
from compression_core.methods.search.spec import SearchSpec
from compression_core.methods.search.trials import Number, PlannedTrial, TrialResult

__all__ = ["layer_spec", "plan", "select_layers", "suggest", "table", "validate"]

SUGGESTED = "suggested"  # the same label as sensitivity.SUGGESTED: choose_best takes that trial
DEFAULT_FIELD = "bits"
_BLOCK = re.compile(r"^(.*\.layers\.\d+)\.")


def _field(search: SearchSpec) -> str:
    return search.step_field or DEFAULT_FIELD


def _wquant(base: Mapping[str, Any]) -> dict[str, Any]:
    config = base.get("wquant")
    if not isinstance(config, Mapping):
        raise SearchPathError(
            "mode",
            "a sensitivity search on a Hugging Face model quantizes one decoder layer at a time with the "
            'spec\'s `wquant`: give it (e.g. "wquant": {"bits": 4, "group_size": 128})',
            loc=("search", "mode"),
        )
    return dict(copy.deepcopy(config))


def layer_spec(base: Mapping[str, Any], search: SearchSpec, layer: str, value: Number) -> dict[str, Any]:
    """The spec quantizing only `layer`'s linears, with `step_field` at `value`."""
    spec = without_search(base)
    config = _wquant(base)
    field = _field(search)
    if field not in config or field in ("only", "ignore"):
        raise SearchPathError(
            "step_field", f"wquant has no numeric field {field!r}", loc=("search", "step_field")
        )
    config[field] = value
    config["only"] = [f"{layer}.*"]
    spec["wquant"] = config
    return spec


def validate(base: Mapping[str, Any], search: SearchSpec) -> None:
    """Every value on a stand-in layer (a 422 naming `search.values` before queueing), and the budget the
    suggested spec needs."""
    from pydantic import ValidationError

    from compression_core.spec import Spec, format_validation_error

    if search.max_perplexity_increase is None:
        raise SearchPathError(
            "max_perplexity_increase",
            "a sensitivity search on a Hugging Face model needs the budget that decides which layers stay "
            "float: max_perplexity_increase (points of perplexity on the validation token ids)",
            loc=("search", "max_perplexity_increase"),
        )
    for value in dict.fromkeys(search.values or []):
        try:
            Spec.model_validate(layer_spec(base, search, "model.layers.0", value))
        except ValidationError as error:
            raise SearchPathError(
                "values", f"{value!r} is refused: {format_validation_error(error)}", loc=("search", "values")
            ) from None


def select_layers(names: Iterable[str], search: SearchSpec) -> list[str]:
    """The decoder layers (`<prefix>.layers.<i>`) holding these tensor names, in model order, narrowed by
    the search's `layers` globs."""
    found = list(dict.fromkeys(m.group(1) for m in map(_BLOCK.match, names) if m is not None))
    if search.layers is not None:
        found = [n for n in found if any(fnmatch.fnmatchcase(n, p) for p in search.layers)]
    if not found:
        raise SpecError("search: no decoder layer (`*.layers.<i>.*` tensors) found in this model")
    return found


def plan(
    search: SearchSpec, base: dict[str, Any], done: Sequence[TrialResult], layers: Sequence[str]
) -> tuple[list[PlannedTrial], str]:
    values = search.values or []
    if not done:
        count = len(layers) * len(values) + 1
        if count > search.max_trials:
            raise SpecError(
                f"search: {len(layers)} decoder layers x {len(values)} values + the suggested spec = {count} "
                f"trials, more than max_trials={search.max_trials}; raise max_trials or narrow `layers`"
            )
        trials = [
            PlannedTrial({"value": v}, layer_spec(base, search, layer, v), label=layer)
            for layer in layers
            for v in values
        ]
        return trials, f"{len(layers)} decoder layers x {len(values)} values of wquant.{_field(search)}"
    if any(t.label == SUGGESTED for t in done):
        return [], "the suggested spec has run"
    kept, note = suggest(search, base, done)
    if kept is None:
        return [], note
    spec = without_search(base)
    config = _wquant(base)
    config["ignore"] = [*config.get("ignore", []), *(f"{layer}.*" for layer in kept)]
    spec["wquant"] = config
    return [PlannedTrial({}, spec, label=SUGGESTED)], note


def suggest(
    search: SearchSpec, base: Mapping[str, Any], done: Sequence[TrialResult]
) -> tuple[list[str] | None, str]:
    """(the decoder layers to keep float, a note): those whose validation increase at the spec's own value
    of the field is over the budget; None when that value was not tried or no layer can be quantized."""
    field = _field(search)
    value = _wquant(base).get(field)
    budget = search.max_perplexity_increase or 0.0
    rows = [t for t in done if t.label not in (None, SUGGESTED) and t.parameters.get("value") == value]
    if not rows:
        return None, f"the spec's wquant.{field}={value} is not among `values`; nothing to suggest"
    layers = list(dict.fromkeys(t.label for t in rows if t.label is not None))
    kept = sorted({t.label for t in rows if t.label is not None and not t.feasible(budget)}, key=layers.index)
    if len(kept) == len(layers):
        return None, f"every decoder layer is over the budget at wquant.{field}={value}; nothing to suggest"
    return kept, (
        f"the suggested spec: wquant.{field}={value} on {len(layers) - len(kept)} decoder layers, "
        f"{len(kept)} kept float"
    )


def table(search: SearchSpec, base: Mapping[str, Any] | None, done: Sequence[TrialResult]) -> dict[str, Any]:
    """Perplexity increase per decoder layer (rows) and value (columns): validation (chosen on) and test
    (reported), with the token counts of both splits."""
    layers = list(dict.fromkeys(t.label for t in done if t.label not in (None, SUGGESTED)))
    values = list(search.values or [])
    cells = {(t.label, t.parameters.get("value")): t for t in done}

    def increase(t: TrialResult, validation: bool) -> float | None:
        after = t.validation_perplexity_after if validation else t.perplexity_after
        before = t.validation_perplexity_before if validation else t.perplexity_before
        return None if after is None or before is None else after - before

    def grid(validation: bool) -> list[list[float | None]]:
        return [
            [increase(cells[(name, v)], validation) if (name, v) in cells else None for v in values]
            for name in layers
        ]

    kept = suggest(search, base, done)[0] if base is not None else None
    counted = next((t for t in done if t.tokens is not None), None)
    return {
        "layers": layers,
        "values": values,
        "step_field": f"wquant.{_field(search)}",
        "measure": "perplexity increase",
        "validation_perplexity_increase": grid(True),
        "perplexity_increase": grid(False),
        "ratio": [[getattr(cells.get((n, v)), "ratio", None) for v in values] for n in layers],
        "kept_float": kept,
        "max_perplexity_increase": search.max_perplexity_increase,
        "tokens": {
            "validation": None if counted is None else counted.validation_tokens,
            "test": None if counted is None else counted.tokens,
        },
    }
