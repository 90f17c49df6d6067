"""Shared fixtures: small state dicts shaped like the models the seeds talk about."""

from __future__ import annotations

import pytest
import torch


def lenet5_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Caffe LeNet-5 shapes (conv1 20@5x5, conv2 50@5x5, fc1 800->500, fc2 500->10), random weights."""
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "conv1.weight": (20, 1, 5, 5),
        "conv1.bias": (20,),
        "conv2.weight": (50, 20, 5, 5),
        "conv2.bias": (50,),
        "fc1.weight": (500, 800),
        "fc1.bias": (500,),
        "fc2.weight": (10, 500),
        "fc2.bias": (10,),
    }
    return {name: torch.randn(shape, generator=g) * 0.05 for name, shape in shapes.items()}


@pytest.fixture
def lenet5() -> dict[str, torch.Tensor]:
    return lenet5_state_dict()
