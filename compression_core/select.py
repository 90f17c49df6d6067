"""Applying rule selectors to a state dict: which rule (if any) owns each tensor.

Without a model object the layer kind is inferred from the tensor: names containing `embed` are
embeddings, 2-D tensors are linear weights, 3-D to 5-D tensors are convolutions (1-D, 2-D, 3-D).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch

from compression_core.errors import SpecError
from compression_core.spec.base import Kind, Selector
from compression_core.spec.model import RuleBase as Rule
from compression_core.spec.model import SpecBase as Spec

_GLOB_CHARS = set("*?[")
_BIAS_NORM_WORDS = ("bias", "norm", "bn", "ln")


@dataclass(frozen=True)
class Selection:
    """The rule that owns a tensor and its position in the spec (for messages)."""

    rule: Rule
    index: int

    @property
    def label(self) -> str:
        return self.rule.label(self.index)


def infer_kind(name: str, tensor: torch.Tensor) -> Kind | None:
    """conv / linear / embedding from the name and shape; None for anything else (vectors, scalars)."""
    if "embed" in name.lower() and tensor.ndim == 2:
        return Kind.embedding
    if tensor.ndim == 2:
        return Kind.linear
    if 3 <= tensor.ndim <= 5:
        return Kind.conv
    return None


def is_bias_or_norm(name: str, tensor: torch.Tensor) -> bool:
    """1-D tensors, `*bias`, and parameters of normalization layers (`bn1.weight`, `layer_norm.weight`)."""
    if tensor.ndim <= 1 or name.endswith("bias"):
        return True
    parts = name.lower().replace("_", ".").split(".")
    return any(p.startswith(("bn", "ln")) or "norm" in p for p in parts[:-1])


def is_weight_tensor(name: str, tensor: torch.Tensor) -> bool:
    """A floating-point weight a compression method can usefully take (not a bias, norm or buffer)."""
    return tensor.is_floating_point() and not is_bias_or_norm(name, tensor)


def _explicit(pattern: str) -> bool:
    if not _GLOB_CHARS & set(pattern):
        return True
    lowered = pattern.lower()
    return any(word in lowered for word in _BIAS_NORM_WORDS)


def matches(selector: Selector, name: str, tensor: torch.Tensor) -> bool:
    """Whether `selector` takes this tensor (integer buffers are never taken)."""
    if not tensor.is_floating_point() or tensor.numel() < max(selector.min_numel, 1):
        return False
    hits = [p for p in selector.patterns if fnmatchcase(name, p)]
    if not hits:
        return False
    if is_bias_or_norm(name, tensor) and not (selector.include_bias_and_norm or any(map(_explicit, hits))):
        return False
    if selector.kind is Kind.any:
        return True
    return infer_kind(name, tensor) is selector.kind


def select_tensors(state_dict: Mapping[str, torch.Tensor], spec: Spec) -> dict[str, Selection]:
    """Map each selected tensor name to its rule (first matching rule wins).

    Raises `SpecError` when a rule selects no tensor, since that is almost always a typo in a pattern.
    """
    chosen: dict[str, Selection] = {}
    for name, tensor in state_dict.items():
        for index, rule in enumerate(spec.rules):
            if matches(rule.select, name, tensor):
                chosen[name] = Selection(rule, index)
                break
    used = {sel.index for sel in chosen.values()}
    for index, rule in enumerate(spec.rules):
        if index not in used:
            raise SpecError(
                f"{rule.label(index)} selects no tensor in this model (patterns {rule.select.patterns}, "
                f"kind {rule.select.kind.value}; tensors taken by an earlier rule do not count)"
            )
    return chosen
