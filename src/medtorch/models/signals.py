"""Biosignal classifiers: a 1-D ResNet, a GRU (the seeds' RNN), a CNN that also reads RR features,
a linear model and a small perceptron on RR features and a coarse beat shape, and MiniRocket
(:mod:`medtorch.models.rocket`, a scikit-learn model on the samples).

Every model takes the signal modality's flat input, ``(batch, leads * length + n_extra)``: the
beat (or window) samples lead after lead, then ``n_extra`` hand-made features (RR intervals).
Written here rather than taken from MONAI, whose networks are 2-D/3-D image models.

>>> model = create_model("cnn_rr", in_channels=2, length=252, n_extra=7, out_features=5)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medtorch.errors import ConfigError
from medtorch.registry import register_model


class _SignalModel(nn.Module):
    """Splits the flat input into ``(batch, leads, length)`` samples and ``(batch, n_extra)`` features."""

    def __init__(self, in_channels: int, length: int, n_extra: int):
        super().__init__()
        self.in_channels, self.length, self.n_extra = in_channels, length, n_extra

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        samples = x[:, : self.in_channels * self.length].reshape(len(x), self.in_channels, self.length)
        return samples, x[:, self.in_channels * self.length :]


class _ResidualBlock1d(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int, kernel: int = 7):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels_in, channels_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm1d(channels_out),
            nn.ReLU(inplace=True),
            nn.Conv1d(channels_out, channels_out, kernel, 1, kernel // 2, bias=False),
            nn.BatchNorm1d(channels_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and channels_in == channels_out
            else nn.Sequential(nn.Conv1d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm1d(channels_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


LONG_INPUT = 1000  # samples; longer inputs (windows of seconds) get a stem that down-samples by 4, as image ResNets do


def _resnet_trunk(in_channels: int, width: int, n_blocks: int, length: int) -> nn.Sequential:
    stride = 2 if length > LONG_INPUT else 1
    layers: list[nn.Module] = [nn.Conv1d(in_channels, width, 9, stride, 4, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
    if length > LONG_INPUT:
        layers.append(nn.MaxPool1d(3, 2, 1))
    channels = width
    for i in range(n_blocks):
        out = width * 2 ** min(i, 2)
        layers.append(_ResidualBlock1d(channels, out, stride=2))
        channels = out
    layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class ResNet1d(_SignalModel):
    def __init__(self, in_channels: int, length: int, n_extra: int, out_features: int, width: int, n_blocks: int, dropout: float, use_extra: bool):
        super().__init__(in_channels, length, n_extra)
        self.use_extra = use_extra
        self.trunk = _resnet_trunk(in_channels, width, n_blocks, length)
        trunk_out = width * 2 ** min(n_blocks - 1, 2)
        extra = n_extra if use_extra else 0
        self.head = nn.Sequential(nn.Linear(trunk_out + extra, 64), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(64, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        samples, extra = self.split(x)
        encoded = self.trunk(samples)
        return self.head(torch.cat([encoded, extra], dim=1) if self.use_extra else encoded)


class GRUClassifier(_SignalModel):
    def __init__(self, in_channels: int, length: int, n_extra: int, out_features: int, hidden: int, downsample: int, dropout: float):
        super().__init__(in_channels, length, n_extra)
        self.pool = nn.AvgPool1d(downsample) if downsample > 1 else nn.Identity()  # shorter sequences: faster, steadier gradients
        self.gru = nn.GRU(in_channels, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden + n_extra, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        samples, extra = self.split(x)
        sequence = self.pool(samples).transpose(1, 2)
        _, last = self.gru(sequence)
        return self.head(torch.cat([last[0], last[1], extra], dim=1))


@register_model("resnet1d", modality="signal", lr=1e-3, weight_decay=1e-4)
def resnet1d(in_channels: int, length: int, out_features: int, n_extra: int = 0, width: int = 32, n_blocks: int = 4, dropout: float = 0.2) -> nn.Module:
    """A 1-D ResNet on the samples alone (the extra features are ignored)."""
    return ResNet1d(in_channels, length, n_extra, out_features, width, n_blocks, dropout, use_extra=False)


@register_model("cnn_rr", modality="signal", lr=1e-3, weight_decay=1e-4)
def cnn_rr(in_channels: int, length: int, out_features: int, n_extra: int = 0, width: int = 32, n_blocks: int = 4, dropout: float = 0.2) -> nn.Module:
    """The 1-D ResNet with the extra features (RR intervals of a beat; spectral and rhythm
    features of a window) joined before its head: morphology and rhythm together."""
    return ResNet1d(in_channels, length, n_extra, out_features, width, n_blocks, dropout, use_extra=True)


@register_model("gru", modality="signal", lr=2e-3, weight_decay=1e-4)
def gru(in_channels: int, length: int, out_features: int, n_extra: int = 0, hidden: int = 64, downsample: int = 4, dropout: float = 0.2) -> nn.Module:
    """A bidirectional GRU over the (down-sampled) samples, with the extra features at its head."""
    return GRUClassifier(in_channels, length, n_extra, out_features, hidden, downsample, dropout)


class FeatureHead(_SignalModel):
    """The extra features and the beat averaged to ``shape_points`` per lead, through one linear
    layer, or (``hidden`` above 0) a one-hidden-layer perceptron."""

    def __init__(self, in_channels: int, length: int, n_extra: int, out_features: int, shape_points: int, hidden: int = 0, dropout: float = 0.0, name: str = "rr_linear"):
        super().__init__(in_channels, length, n_extra)
        inputs = n_extra + in_channels * shape_points
        if inputs == 0:
            raise ConfigError(f"{name} needs extra features (RR intervals) or shape_points above 0")
        self.shape = nn.AdaptiveAvgPool1d(shape_points) if shape_points else None
        # weight names are what bundles store: a hidden layer before ``linear``, so rr_linear bundles hold ``linear.*`` only
        self.hidden = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)) if hidden else nn.Identity()
        self.linear = nn.Linear(hidden or inputs, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        samples, extra = self.split(x)
        parts = [extra] if self.shape is None else [extra, self.shape(samples).flatten(1)]
        return self.linear(self.hidden(torch.cat(parts, dim=1)))


@register_model("rr_linear", modality="signal", lr=1e-2, weight_decay=1e-4)
def rr_linear(in_channels: int, length: int, out_features: int, n_extra: int = 0, shape_points: int = 8) -> nn.Module:
    """A linear model on the extra features (RR intervals and their ratios) and the beat averaged to
    ``shape_points`` per lead, after de Chazal et al. (2004): few weights, so it carries over to new patients."""
    return FeatureHead(in_channels, length, n_extra, out_features, shape_points)


@register_model("rr_mlp", modality="signal", lr=3e-3, weight_decay=1e-4)
def rr_mlp(in_channels: int, length: int, out_features: int, n_extra: int = 0, shape_points: int = 0, hidden: int = 32, dropout: float = 0.2) -> nn.Module:
    """``rr_linear`` with one hidden layer: still only the hand-made features (no beat shape by
    default), but able to combine them (an early beat *with* a P wave unlike the patient's own)."""
    return FeatureHead(in_channels, length, n_extra, out_features, shape_points, hidden, dropout, name="rr_mlp")


@register_model("minirocket", modality="signal", kind="sklearn", reads="samples", task_types=("binary", "multiclass"))
def minirocket(
    task_type: str, in_channels: int, length: int, n_extra: int = 0, seed: int = 0, n_features: int = 10_000, C: float = 0.01, trees: int = 300
) -> Any:
    """MiniRocket features of the windows through logistic regression, averaged with extra trees on the window features."""
    from medtorch.models.rocket import MiniRocketClassifier  # scikit-learn, only when built: not on the CLI's start-up path

    return MiniRocketClassifier(in_channels, length, n_extra, n_features=n_features, C=C, trees=trees, seed=seed)
