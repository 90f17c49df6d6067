"""Fire-module students: seed 002's route to a smaller network by design (SqueezeNet, Iandola et al. 2016).

A Fire module replaces a k x k convolution by a 1x1 "squeeze" convolution to few channels followed by parallel
1x1 and 3x3 "expand" convolutions whose outputs are concatenated (ReLU after each), so a layer with C_out
output channels costs about s·C_in + s·e1 + 9·s·e3 weights instead of k²·C_in·C_out.

- `squeezenet-lenet5`: LeNet-5 (see `builtin.LeNet5`) with its two convolutions replaced by Fire modules of
  the same output widths (20 and 50 channels; 3x3 expands with padding, then 2x2 max-pooling, and a final
  ceil-mode pool to the 4x4 maps fc1 expects). The fc1/fc2 head is LeNet-5's, so specs naming fc1/fc2 apply
  unchanged; `head="squeeze"` uses SqueezeNet's head instead (1x1 convolution to the classes, then global
  average pooling), which drops the 400k fully connected weights.
- `vgg-small` and `squeezenet-vgg`: a small VGG-BN-style net (3x3 convolutions 32-64-64-128-128, each with
  BatchNorm and ReLU, 2x2 pools, then a 1x1 convolution classifier and global average pooling) and the same
  net with every convolution but the stem replaced by a Fire module of the same output width (BatchNorm
  inside): the original and its squeezed version.
- `squeezenet1_1-mnist`: torchvision's SqueezeNet 1.1 (identical modules and state-dict names) with a stem for
  `in_channels` (default 1) input channels and stride `stem_stride` (default 1), so it takes 28x28 gray
  images; `squeezenet1_1` itself is built by name from torchvision (3-channel input) like every torchvision
  classifier. Why stride 1: torchvision's stride-2 stem (made for 224x224) leaves 1x1 maps for the last four
  Fire modules of a 28x28 image, and the net did not train there (36.6% after 10 epochs on mnist-5k, see
  docs/reproductions.md); with stride 1 they see 3x3 maps at the same parameter count.

All accept flattened 784-vectors (`mnist-5k`, `fashion-mnist`) as 1x28x28 images, as LeNet-5 does.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Fire", "SqueezeLeNet5", "SqueezeNet11Gray", "SqueezeVGG", "VGGSmall"]


def _as_images(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Flattened square images (n, c·s·s) as (n, c, s, s); image batches pass through."""
    if x.dim() == 2:
        side = int(round((x.shape[1] // channels) ** 0.5))
        return x.view(-1, channels, side, side)
    return x


class Fire(nn.Module):
    """squeeze (1x1, s channels) -> ReLU -> [expand 1x1 (e1) | expand 3x3 (e3)] -> ReLU; e1 + e3 outputs.

    With `batch_norm` (the VGG-style nets) a BatchNorm follows the squeeze and the concatenated expands,
    before their ReLUs, as in VGG-BN; without it the module is SqueezeNet's."""

    def __init__(
        self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int, batch_norm: bool = False
    ):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.squeeze_bn: nn.Module = nn.BatchNorm2d(squeeze) if batch_norm else nn.Identity()
        self.expand_bn: nn.Module = nn.BatchNorm2d(expand1x1 + expand3x3) if batch_norm else nn.Identity()

    @property
    def out_channels(self) -> int:
        return self.expand1x1.out_channels + self.expand3x3.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze_bn(self.squeeze(x)))
        return torch.relu(self.expand_bn(torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1)))


class SqueezeLeNet5(nn.Module):
    """LeNet-5 with Fire modules in place of conv1 (20 channels) and conv2 (50 channels)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, head: str = "fc"):
        super().__init__()
        if head not in ("fc", "squeeze"):
            raise ValueError("head must be 'fc' (LeNet-5's fc1/fc2) or 'squeeze' (1x1 conv + average pool)")
        self.in_channels = in_channels
        self.head = head
        self.fire1 = Fire(in_channels, 4, 10, 10)  # 20 channels, as conv1
        self.fire2 = Fire(20, 8, 25, 25)  # 50 channels, as conv2
        if head == "fc":
            self.fc1 = nn.Linear(800, 500)
            self.fc2 = nn.Linear(500, num_classes)
        else:
            self.classifier = nn.Conv2d(50, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_images(x, self.in_channels)
        x = nn.functional.max_pool2d(self.fire1(x), 2)  # 28 -> 14
        x = nn.functional.max_pool2d(self.fire2(x), 2)  # 14 -> 7
        if self.head == "squeeze":
            return self.classifier(x).mean(dim=(2, 3))
        x = nn.functional.max_pool2d(x, 2, ceil_mode=True)  # 7 -> 4: the 50 x 4 x 4 = 800 fc1 inputs
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


VGG_WIDTHS = (32, 64, 64, 128, 128)
VGG_POOL_AFTER = (0, 2, 4)  # 2x2 max-pool after these layers: 28 -> 14 -> 7 -> 3


class _SmallVGGBase(nn.Module):
    def __init__(self, num_classes: int, in_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.features = nn.Sequential()
        width = in_channels
        for i, out in enumerate(VGG_WIDTHS):
            self.features.append(self._layer(i, width, out))
            if i in VGG_POOL_AFTER:
                self.features.append(nn.MaxPool2d(2))
            width = out
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def _layer(self, index: int, in_channels: int, out_channels: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(_as_images(x, self.in_channels))
        return self.classifier(x).mean(dim=(2, 3))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()
    )


class VGGSmall(_SmallVGGBase):
    """The original: 3x3 convolutions (padding 1), BatchNorm and ReLU, widths 32-64-64-128-128."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__(num_classes, in_channels)

    def _layer(self, index: int, in_channels: int, out_channels: int) -> nn.Module:
        return _conv_bn_relu(in_channels, out_channels)


class SqueezeVGG(_SmallVGGBase):
    """VGGSmall with Fire modules (squeeze = width / 8, expands width / 2 each) after the stem convolution."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__(num_classes, in_channels)

    def _layer(self, index: int, in_channels: int, out_channels: int) -> nn.Module:
        if index == 0:  # SqueezeNet keeps a plain first convolution
            return _conv_bn_relu(in_channels, out_channels)
        half = out_channels // 2
        return Fire(in_channels, max(out_channels // 8, 4), half, half, batch_norm=True)


class SqueezeNet11Gray(nn.Module):
    """torchvision's SqueezeNet 1.1 (weights never downloaded) with an `in_channels`, `stem_stride` stem."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, stem_stride: int = 1
    ):
        super().__init__()
        from torchvision.models.squeezenet import SqueezeNet

        if stem_stride not in (1, 2):
            raise ValueError("stem_stride must be 1 (28x28 inputs) or 2 (torchvision's, for large images)")
        net = SqueezeNet("1_1", num_classes=num_classes, dropout=dropout)
        net.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, stride=stem_stride)
        self.in_channels = in_channels
        self.features, self.classifier = net.features, net.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.classifier(self.features(_as_images(x, self.in_channels)))
        return torch.flatten(x, 1)
