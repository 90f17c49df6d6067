"""`wquant`'s checks of the whole spec (run when the spec is validated, before anything is queued)."""

from __future__ import annotations

from typing import Any

__all__ = ["check_spec"]


def check_spec(spec: Any) -> None:
    config = spec.wquant
    if spec.model is None or not spec.model.hf:
        raise ValueError('wquant: quantizes a Hugging Face checkpoint: give "model": {"hf": true}')
    if config.algorithm == "gptq" and spec.data is None:
        raise ValueError('wquant: GPTQ calibrates on the uploaded token ids: give "data": {"upload": true}')
    if spec.data is not None and not spec.data.upload:
        raise ValueError(
            'wquant: a language model\'s data is the uploaded token ids: "data": {"upload": true}'
        )
