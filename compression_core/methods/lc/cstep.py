"""The C step: Θ = Π(w - λ/μ), each selected tensor compressed by its own spec rule at the current μ.

Π is exactly the library's direct compression (`compress_tensor`: magnitude pruning to κ, k-means weight
sharing, truncated SVD), so a C step is the pipeline's data-free compression applied to the shifted
weights. Only low-rank rank selection depends on μ (its cost is α C(r) + μ/2 ||W - W_r||²): the rule's
`mu` is replaced by the LC step's μ.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from compression_core.methods.apply import compress_tensor
from compression_core.methods.registry import shared_keeps
from compression_core.records import TensorRecord
from compression_core.select import Selection
from compression_core.spec.model import RuleBase as Rule
from compression_core.spec.model import SpecBase as Spec

__all__ = ["c_step", "decompressed", "rule_at_mu", "shifted_weights", "spec_at_mu"]


def rule_at_mu(rule: Rule, mu: float) -> Rule:
    """The rule with its low-rank step's μ set to `mu` (other rules do not depend on μ)."""
    if rule.step("lowrank") is None:
        return rule
    steps = [s.model_copy(update={"mu": mu}) if s.type == "lowrank" else s for s in rule.steps]
    return rule.model_copy(update={"steps": steps})


def spec_at_mu(spec: Spec, mu: float) -> Spec:
    """The whole spec at `mu` (what one C step compresses with), without its `lc` field."""
    return spec.model_copy(update={"rules": [rule_at_mu(r, mu) for r in spec.rules], "lc": None})


def shifted_weights(
    weights: Mapping[str, torch.Tensor], lambdas: Mapping[str, torch.Tensor] | None, mu: float
) -> dict[str, torch.Tensor]:
    """w - λ/μ per tensor (w itself without multipliers)."""
    if lambdas is None:
        return {name: w.detach() for name, w in weights.items()}
    return {name: w.detach() - lambdas[name] / mu for name, w in weights.items()}


def c_step(
    weights: Mapping[str, torch.Tensor],
    selections: Mapping[str, Selection],
    mu: float,
    *,
    lambdas: Mapping[str, torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, TensorRecord]:
    """Records Θ of every selected tensor: the compression of w - λ/μ by the tensor's rule at μ."""
    targets = shifted_weights({n: weights[n] for n in selections}, lambdas, mu)
    keeps = shared_keeps(targets, selections)
    return {
        name: compress_tensor(
            name,
            targets[name],
            rule_at_mu(sel.rule, mu),
            label=sel.label,
            keep=keeps.get(name),
            device=str(device),
        )
        for name, sel in selections.items()
    }


def decompressed(
    records: Mapping[str, TensorRecord], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Δ(Θ) per tensor: each record's dense reconstruction (computed on the CPU, as the .bin decodes it)."""
    return {name: record.reconstruct().to(device) for name, record in records.items()}
