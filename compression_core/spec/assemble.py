"""The spec's `Rule` and `Spec` models, assembled from the method registry.

The registered steps form the discriminated union of a rule's `steps` and the allowed step sequences; each
registered whole-model method adds its top-level field. The models are built at first use and rebuilt
whenever the registry changes (`register`, `reload`), so entry-point methods appear in `spec_json_schema()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Union

from pydantic import Field, create_model

from compression_core.methods import registry
from compression_core.methods.base import StepSpec
from compression_core.spec.model import RuleBase, SpecBase

__all__ = ["current", "rule_model", "spec_model", "step_union"]

_cache: dict[str, Any] = {"generation": None}


def _step_getter(kind: str) -> Callable[[RuleBase], StepSpec | None]:
    def get(rule: RuleBase) -> StepSpec | None:
        return rule.step(kind)

    return get


def _build() -> None:
    steps = registry.step_methods()
    classes = tuple(m.spec for m in steps.values())
    union: Any = Union[classes] if len(classes) > 1 else classes[0]  # noqa: UP007 (built from a tuple)
    if len(classes) > 1:
        union = Annotated[union, Field(discriminator="type")]
    rule: type[RuleBase] = create_model(
        "Rule",
        __base__=RuleBase,
        __module__="compression_core.spec",
        steps=(list[union], Field(min_length=1)),
    )
    rule.plans = tuple(registry.allowed_plans())
    for name in steps:  # rule.prune, rule.quantize, ...: the rule's step of that type (or None)
        if name not in rule.model_fields and not hasattr(rule, name):
            setattr(rule, name, property(_step_getter(name)))
    methods = registry.model_methods()
    fields: dict[str, Any] = {"rules": (list[rule], Field(default_factory=list))}  # type: ignore[valid-type]
    for method in methods.values():
        fields[method.name] = (
            method.spec | None,
            Field(default=None, description=method.spec.description or None),
        )
    spec: type[SpecBase] = create_model(
        "Spec", __base__=SpecBase, __module__="compression_core.spec", __doc__=SpecBase.__doc__, **fields
    )
    spec.method_specs = tuple(m.spec for m in methods.values())
    _cache.update(rule=rule, spec=spec, union=union)


def current() -> tuple[type[RuleBase], type[SpecBase]]:
    """(Rule, Spec) for the registry as it is now."""
    generation = registry.generation()
    if _cache["generation"] != generation:
        _build()
        _cache["generation"] = generation
    return _cache["rule"], _cache["spec"]


def spec_model() -> type[SpecBase]:
    return current()[1]


def rule_model() -> type[RuleBase]:
    return current()[0]


def step_union() -> Any:
    current()
    return _cache["union"]
