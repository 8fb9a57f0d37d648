"""MiniRocket features of signal windows (Dempster, Schmidt & Webb, KDD 2021) and a classifier on them.

MiniRocket convolves each window with 84 fixed kernels of length 9 at dilations spread over the window,
and keeps, per kernel and dilation, the proportion of positive values (PPV) above a few biases drawn from
the training windows. A linear model on those ten thousand features is among the strongest time-series
classifiers and needs no training of the convolutions. Written here in PyTorch (``conv1d`` and a sort)
rather than taken from sktime/aeon, which would pull numba and their own scikit-learn pins for 100 lines.

>>> clf = create_model("minirocket", task_type="multiclass", in_channels=1, length=4096, n_extra=63).fit(x, y)
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from medtorch.errors import ConfigError
from medtorch.registry import register_model

KERNEL_LENGTH = 9
GOLDEN = (np.sqrt(5) - 1) / 2  # low-discrepancy quantiles for the biases, as in the paper
BATCH = 16  # windows convolved at once: 16 x 84 x length floats per dilation


def _kernels() -> np.ndarray:
    """The 84 kernels: weight 2 at three of the nine positions, -1 elsewhere (each sums to zero)."""
    return np.array([[2.0 if i in chosen else -1.0 for i in range(KERNEL_LENGTH)] for chosen in combinations(range(KERNEL_LENGTH), 3)], dtype=np.float32)


class MiniRocket(TransformerMixin, BaseEstimator):
    """MiniRocket's transform: ``(n, channels, length)`` windows to ``(n, ~n_features)`` PPV features.

    With several channels, each kernel at each dilation reads a random subset of them (summed), as
    MiniRocket's multivariate form does. Learned state: ``dilations_``, ``biases_`` (one
    ``(84, n_biases)`` array per dilation) and ``channels_`` (one ``(84, channels)`` 0/1 mask per dilation).

    >>> features = MiniRocket(seed=0).fit(windows).transform(windows)
    """

    def __init__(self, n_features: int = 10_000, max_dilations: int = 32, seed: int = 0):
        self.n_features, self.max_dilations, self.seed = n_features, max_dilations, seed

    def fit(self, x: np.ndarray, y: Any = None) -> MiniRocket:
        import torch

        x = _windows(x)
        n_kernels = len(_kernels())
        per_kernel = max(1, min(self.n_features // n_kernels, self.max_dilations))
        largest = max(0.0, np.log2((x.shape[-1] - 1) / (KERNEL_LENGTH - 1)))
        dilations, counts = np.unique(np.floor(np.logspace(0, largest, per_kernel, base=2)).astype(int), return_counts=True)
        biases_per_dilation = counts * max(1, self.n_features // n_kernels // per_kernel)
        for i in range(max(0, self.n_features // n_kernels - int(biases_per_dilation.sum()))):  # the remainder, one each from the shortest
            biases_per_dilation[i % len(biases_per_dilation)] += 1
        rng = np.random.default_rng(self.seed)
        self.dilations_ = dilations.tolist()
        self.channels_, self.biases_ = [], []
        drawn = 0
        for index, (dilation, n_biases) in enumerate(zip(dilations, biases_per_dilation)):
            self.channels_.append(_channel_subsets(rng, n_kernels, x.shape[1]))
            example = torch.from_numpy(x[rng.integers(len(x))][None])
            response = self._convolve(example, index, dilation)[0]
            quantiles = torch.from_numpy(((np.arange(1, n_biases + 1) + drawn) * GOLDEN % 1).astype(np.float32))
            drawn += n_biases
            self.biases_.append(torch.quantile(response, quantiles, dim=1).T.contiguous().numpy())
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = _windows(x)
        parts = []
        with torch.no_grad():
            for start in range(0, len(x), BATCH):
                batch = torch.from_numpy(x[start : start + BATCH])
                parts.append(torch.cat([self._ppv(batch, i, d) for i, d in enumerate(self.dilations_)], dim=1))
        return torch.cat(parts).numpy() if parts else np.zeros((0, sum(b.size for b in self.biases_)), np.float32)

    def _convolve(self, batch: Any, index: int, dilation: int) -> Any:
        """``(batch, 84, time)`` responses; every other dilation is zero-padded to keep the length, as in the paper."""
        import torch
        import torch.nn.functional as F

        kernels = torch.from_numpy(_kernels())[:, None, :]
        padding = (KERNEL_LENGTH // 2) * dilation if index % 2 == 0 else 0
        per_channel = F.conv1d(batch.reshape(-1, 1, batch.shape[-1]), kernels, dilation=dilation, padding=padding)
        if batch.shape[1] == 1:
            return per_channel
        per_channel = per_channel.reshape(batch.shape[0], batch.shape[1], len(kernels), -1)
        return torch.einsum("bckt,kc->bkt", per_channel, torch.from_numpy(self.channels_[index]))

    def _ppv(self, batch: Any, index: int, dilation: int) -> Any:
        """Share of each response above each bias (a few biases per dilation: comparing beats sorting the response)."""
        response = self._convolve(batch, index, dilation)
        biases = torch_from(self.biases_[index])
        return (response[..., None] > biases[None, :, None, :]).float().mean(dim=2).flatten(1)


def torch_from(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(array)


def _windows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or x.shape[-1] < KERNEL_LENGTH:
        raise ValueError(f"MiniRocket reads (n, channels, length >= {KERNEL_LENGTH}) windows, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _channel_subsets(rng: np.random.Generator, n_kernels: int, channels: int) -> np.ndarray:
    """A 0/1 mask per kernel: all of one channel; else 2**U(0, log2(min(channels, 9) + 1)) random ones, as sktime draws them."""
    mask = np.zeros((n_kernels, channels), dtype=np.float32)
    for kernel in range(n_kernels):
        size = int(2 ** rng.uniform(0, np.log2(min(channels, KERNEL_LENGTH) + 1))) if channels > 1 else 1
        mask[kernel, rng.choice(channels, size=min(size, channels), replace=False)] = 1.0
    return mask


class MiniRocketClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression on MiniRocket features of the samples, averaged with extra trees on the hand-made features.

    Reads the signal modality's flat rows: ``in_channels * length`` samples, then ``n_extra`` features. On Bonn
    EEG (cross-validation inside training folds) the two together beat either alone: the convolutions see
    waveform detail the window statistics miss, and the trees see the statistics. ``trees=0`` keeps MiniRocket alone.

    >>> clf = MiniRocketClassifier(in_channels=1, length=4096, n_extra=63).fit(x, y)
    """

    def __init__(
        self, in_channels: int, length: int, n_extra: int = 0, n_features: int = 10_000, C: float = 0.01, trees: int = 300, seed: int = 0
    ):
        self.in_channels, self.length, self.n_extra = in_channels, length, n_extra
        self.n_features, self.C, self.trees, self.seed = n_features, C, trees, seed

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> MiniRocketClassifier:
        from sklearn.ensemble import ExtraTreesClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        samples, extra = self._split(x)
        self.rocket_ = MiniRocket(self.n_features, seed=self.seed).fit(samples)
        self.linear_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed))
        self.linear_.fit(self.rocket_.transform(samples), y, logisticregression__sample_weight=sample_weight)
        self.classes_ = self.linear_.classes_
        self.trees_ = None
        if self.trees and self.n_extra:
            self.trees_ = ExtraTreesClassifier(n_estimators=self.trees, max_leaf_nodes=256, random_state=self.seed)
            self.trees_.fit(extra, y, sample_weight=sample_weight)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        samples, extra = self._split(x)
        probabilities = self.linear_.predict_proba(self.rocket_.transform(samples))
        if self.trees_ is not None:
            probabilities = (probabilities + self.trees_.predict_proba(extra)) / 2
        return probabilities

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        n_samples = self.in_channels * self.length
        if x.ndim != 2 or x.shape[1] != n_samples + self.n_extra:
            raise ValueError(f"expected rows of {self.in_channels} x {self.length} samples and {self.n_extra} features, got shape {x.shape}")
        return x[:, :n_samples].reshape(len(x), self.in_channels, self.length), x[:, n_samples:]


@register_model("minirocket", modality="signal", kind="sklearn", reads="samples")
def minirocket(
    task_type: str, in_channels: int, length: int, n_extra: int = 0, seed: int = 0, n_features: int = 10_000, C: float = 0.01, trees: int = 300
) -> MiniRocketClassifier:
    """MiniRocket features of the windows through logistic regression, averaged with extra trees on the window features."""
    if task_type not in ("binary", "multiclass"):
        raise ConfigError(f"minirocket classifies one label per window (binary or multiclass), not a {task_type} target")
    return MiniRocketClassifier(in_channels, length, n_extra, n_features=n_features, C=C, trees=trees, seed=seed)
