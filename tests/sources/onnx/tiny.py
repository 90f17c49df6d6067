"""A model class that exists only in the tests (never registered with the service): a stem with BatchNorm, a
residual block, a flatten and a linear head, for 8x8 digits given as 64 features. `exported` trains it
briefly on scikit-learn's digits and exports it as a user would."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from compression_core.data import DataSplits


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.block = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
        )
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, 8, 8)
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(x + self.block(x))  # the residual add
        x = nn.functional.max_pool2d(x, 2)
        return self.head(torch.flatten(x, 1))


def trained(data: DataSplits, epochs: int = 3) -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    x, y = data.train.tensors
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            optimizer.step()
    return model.eval()


def export(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """The export line of docs/bring-your-own-model.md: the dynamo exporter, BatchNorms kept as layers
    (`optimize=False`), the weights inside the file (`external_data=False`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (example,), str(path), dynamo=True, optimize=False, external_data=False
        )
    return path


def accuracy(model: nn.Module, data: DataSplits) -> float:
    x, y = data.test.tensors
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())
