"""The built-in architectures: the two LeNets of Deep Compression / the LC toolkit, a generic MLP, and the
Fire-module students of seed 002 (`squeeze.py`).

Parameter names follow the papers' layer names (`fc1.weight`, `conv1.weight`, ...) so a spec's
selectors read like the tables they reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from compression_core.models.squeeze import SqueezeLeNet5, SqueezeNet11Gray, SqueezeVGG, VGGSmall


class LeNet300(nn.Module):
    """LeNet-300-100: in_features-300-100-num_classes, ReLU between layers (266,200 weights for MNIST)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10, hidden: Sequence[int] = (300, 100)):
        super().__init__()
        if len(hidden) != 2:
            raise ValueError("lenet300 has exactly two hidden layers")
        self.in_features = in_features
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Caffe LeNet-5: conv1 20@5x5, pool 2, conv2 50@5x5, pool 2, fc1 800->500, ReLU, fc2 500->10.

    As in Caffe's `lenet_train_test.prototxt` (and the LC toolkit / Deep Compression), there is no
    nonlinearity after the convolutions, only max-pooling; input is 1x28x28.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flattened 784-vectors, as mnist-5k ships them
            x = x.view(-1, 1, 28, 28)
        x = nn.functional.max_pool2d(self.conv1(x), 2)
        x = nn.functional.max_pool2d(self.conv2(x), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class MLP(nn.Module):
    """A plain MLP with ReLU between layers: `sizes = [in, hidden..., out]`, layers named fc1, fc2, ..."""

    def __init__(self, sizes: Sequence[int] = (64, 32, 10)):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ValueError("mlp sizes must list at least an input and an output size, all positive")
        self.in_features = sizes[0]
        self.depth = len(sizes) - 1
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
            self.add_module(f"fc{i}", nn.Linear(a, b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"fc{i}")(x)
            if i < self.depth:
                x = torch.relu(x)
        return x


BUILTIN_MODELS: dict[str, type[nn.Module]] = {
    "lenet300": LeNet300,
    "lenet5": LeNet5,
    "mlp": MLP,
    # seed 002's Fire-module students and their originals (squeeze.py)
    "squeezenet-lenet5": SqueezeLeNet5,
    "vgg-small": VGGSmall,
    "squeezenet-vgg": SqueezeVGG,
    "squeezenet1_1-mnist": SqueezeNet11Gray,
}
