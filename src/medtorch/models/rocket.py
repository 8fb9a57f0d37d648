"""MiniRocket features of signal windows (Dempster, Schmidt & Webb, KDD 2021) and a classifier on them.

MiniRocket convolves each window with 84 fixed kernels of length 9 at dilations spread over the window,
and keeps, per kernel and dilation, the proportion of positive values (PPV) above a few biases drawn from
the training windows. A linear model on those 9,996 features is among the strongest time-series
classifiers and needs no training of the convolutions. Written here in PyTorch (``conv1d``, with the counting
in NumPy) rather than taken from sktime/aeon, which would pull numba and their own scikit-learn pins for 100 lines.
Registered as ``minirocket`` in :mod:`medtorch.models.signals`, which imports this module only when it is built.

>>> clf = MiniRocketClassifier(in_channels=1, length=4096, n_extra=63).fit(x, y)
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

KERNEL_LENGTH = 9
GOLDEN = (np.sqrt(5) - 1) / 2  # low-discrepancy quantiles for the biases, as in the paper
BATCH = 16  # windows convolved at once: 16 x 84 x length floats per dilation


def _kernels() -> np.ndarray:
    """The 84 kernels: weight 2 at three of the nine positions, -1 elsewhere (each sums to zero)."""
    return np.array([[2.0 if i in chosen else -1.0 for i in range(KERNEL_LENGTH)] for chosen in combinations(range(KERNEL_LENGTH), 3)], dtype=np.float32)


KERNELS = _kernels()


class MiniRocket(TransformerMixin, BaseEstimator):
    """MiniRocket's transform: ``(n, channels, length)`` windows to ``(n, n_features // 84 * 84)`` PPV features.

    As the reference (Dempster et al.; sktime/aeon): dilations spread exponentially up to the window, the
    features shared out among them; each kernel at each dilation gets its own biases, quantiles (a
    golden-ratio sequence) of its response to a training window drawn for it; half the kernels count
    their PPV over the whole zero-padded response and half over the part clear of the padding, alternating
    with kernel and dilation. With several channels each kernel at each dilation reads a random subset of
    them (summed), as MiniRocket's multivariate form does. Learned state: ``dilations_``, ``biases_`` (one
    ``(84, n_biases)`` array per dilation) and ``channels_`` (one ``(84, channels)`` 0/1 mask per dilation).

    >>> features = MiniRocket(seed=0).fit(windows).transform(windows)
    """

    def __init__(self, n_features: int = 10_000, max_dilations: int = 32, seed: int = 0):
        self.n_features, self.max_dilations, self.seed = n_features, max_dilations, seed

    def fit(self, x: np.ndarray, y: Any = None) -> MiniRocket:
        import torch

        x = _windows(x)
        n_kernels = len(KERNELS)
        per_kernel = max(1, self.n_features // n_kernels)
        self.dilations_, biases_per_dilation = _dilations(x.shape[-1], per_kernel, self.max_dilations)
        rng = np.random.default_rng(self.seed)
        self.channels_, self.biases_ = [], []
        drawn = 0
        for index, (dilation, n_biases) in enumerate(zip(self.dilations_, biases_per_dilation)):
            self.channels_.append(_channel_subsets(rng, n_kernels, x.shape[1]))
            examples = torch.from_numpy(x[rng.integers(len(x), size=n_kernels)])  # one per kernel
            mixed = torch.einsum("kcl,kc->kl", examples, torch.from_numpy(self.channels_[-1]))[None]  # kernel k's channels of example k
            response = _respond(mixed, dilation)[0]
            levels = (np.arange(drawn + 1, drawn + n_kernels * n_biases + 1) * GOLDEN % 1).reshape(n_kernels, n_biases)
            drawn += n_kernels * n_biases
            self.biases_.append(_quantiles(response.sort(dim=-1).values.numpy(), levels))
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
        """``(batch, 84, length)``: each kernel on its subset of the channels (summed first: the kernel is linear)."""
        import torch

        if batch.shape[1] == 1:  # every kernel reads the one channel
            return _respond(batch, dilation)
        return _respond(torch.einsum("bcl,kc->bkl", batch, torch.from_numpy(self.channels_[index])), dilation)

    def _ppv(self, batch: Any, index: int, dilation: int) -> Any:
        """``(batch, 84 * n_biases)`` shares of each response above each of its kernel's biases; kernels whose
        (kernel + dilation) index is odd count only the part of the response clear of the zero padding.
        Counted in NumPy: ``count_nonzero`` is four times faster than a torch sum of booleans here."""
        import torch

        response = self._convolve(batch, index, dilation).numpy()
        length, margin = response.shape[-1], (KERNEL_LENGTH // 2) * dilation
        clear = ((np.arange(response.shape[1]) + index) % 2 == 1)[None, :]
        shares = []
        for bias in self.biases_[index].T:  # (84,) per step: one boolean response in memory at a time
            above = response > bias[None, :, None]
            edges = np.count_nonzero(above[..., :margin], axis=-1) + np.count_nonzero(above[..., length - margin :], axis=-1)
            counted = np.count_nonzero(above, axis=-1) - np.where(clear, edges, 0)
            shares.append(counted / np.where(clear, length - 2 * margin, length))
        return torch.from_numpy(np.stack(shares, axis=-1).astype(np.float32)).flatten(1)


def _dilations(length: int, per_kernel: int, max_dilations: int) -> tuple[list[int], list[int]]:
    """Dilations 2**0 ... up to a kernel spanning the window, and how many biases (features per kernel) each gets."""
    tried = max(1, min(per_kernel, max_dilations))
    largest = max(0.0, np.log2((length - 1) / (KERNEL_LENGTH - 1)))
    dilations, counts = np.unique(np.floor(np.logspace(0, largest, tried, base=2)).astype(int), return_counts=True)
    biases = np.floor(counts * per_kernel / tried).astype(int)
    for i in range(per_kernel - int(biases.sum())):  # the remainder, one each from the shortest dilation up
        biases[i % len(biases)] += 1
    return dilations.tolist(), biases.tolist()


def _quantiles(ordered: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Row ``k``'s quantiles at ``levels[k]`` of the sorted rows ``ordered``, by linear interpolation (NumPy's default)."""
    position = levels * (ordered.shape[1] - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, ordered.shape[1] - 1)
    rows = np.arange(len(ordered))[:, None]
    low, high = ordered[rows, below], ordered[rows, above]
    return (low + (position - below) * (high - low)).astype(np.float32)


def _respond(x: Any, dilation: int) -> Any:
    """``(batch, 84, length)`` responses, zero-padded to keep the length: every kernel on a one-channel ``x``
    (a plain convolution), or kernel ``k`` on channel ``k`` of an 84-channel ``x`` (a grouped one)."""
    import torch
    import torch.nn.functional as F

    groups = 1 if x.shape[1] == 1 else len(KERNELS)
    return F.conv1d(x, torch.from_numpy(KERNELS)[:, None, :], dilation=dilation, padding=(KERNEL_LENGTH // 2) * dilation, groups=groups)


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
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from medtorch.registry import create_model

        samples, extra = self._split(x)
        self.rocket_ = MiniRocket(self.n_features, seed=self.seed).fit(samples)
        self.linear_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed))
        self.linear_.fit(self.rocket_.transform(samples), y, logisticregression__sample_weight=sample_weight)
        self.classes_ = self.linear_.classes_
        self.trees_ = None
        if self.trees and self.n_extra:
            self.trees_ = create_model("extra_trees", task_type="multiclass", seed=self.seed, n_estimators=self.trees)  # the registry's, bounded
            self.trees_.fit(extra, y, sample_weight=sample_weight)
            assert np.array_equal(self.trees_.classes_, self.classes_)  # both sort the labels: their probabilities line up
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
