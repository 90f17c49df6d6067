"""`distill`'s checks of the whole spec (run when the spec is validated, before anything is queued)."""

from __future__ import annotations

from typing import Any

__all__ = ["check_spec"]


def check_spec(spec: Any) -> None:
    hf = spec.model is not None and spec.model.hf
    if spec.distill.teacher.hf != hf:
        raise ValueError(
            'distill: a Hugging Face causal LM (model.hf) distills from a Hugging Face teacher ("teacher": '
            '{"hf": true}: the job\'s teacher checkpoint, or the uploaded model itself when none is sent), '
            "and only such a model does"
        )
    if hf and spec.method("wquant") is not None:
        raise ValueError(
            "distill: on a language model it retrains the rules' compressed weights; it does not combine "
            "with wquant (quantize the distilled model in a second job)"
        )
