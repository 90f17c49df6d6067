"""The input an architecture known by name takes, when its name tells it (deploy traces and exports with
one sample of it; the spec's `model.input_shape` or the data say it otherwise)."""

from __future__ import annotations

from typing import Any

__all__ = ["known_input_shape"]


def known_input_shape(arch: str, kwargs: dict[str, Any]) -> tuple[int, ...] | None:
    """One sample's shape without the batch for the built-ins and torchvision classifiers; None otherwise."""
    from compression_core.models.builtin import BUILTIN_MODELS

    if arch in BUILTIN_MODELS:
        if arch == "lenet5":
            return (int(kwargs.get("in_channels", 1)), 28, 28)
        if arch == "lenet300":
            return (int(kwargs.get("in_features", 784)),)
        if arch == "mlp":
            return (int(list(kwargs.get("sizes", [64]))[0]),)
    try:
        import torchvision.models

        if arch in torchvision.models.list_models(module=torchvision.models):
            side = 299 if arch == "inception_v3" else 224
            return (3, side, side)
    except ImportError:  # torchvision missing: only the explicit shape can help
        pass
    return None
