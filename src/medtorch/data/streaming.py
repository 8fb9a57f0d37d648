"""Datasets that read from disk batch by batch, for data larger than memory.

The trainer takes any map-style dataset; these keep only the rows of the current batch in
memory (the operating system pages the file in and out).

>>> TabularPreprocessor.from_config(state).write_features("big.csv", "features.npy")
>>> dataset = MemmapDataset("features.npy", targets)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class MemmapDataset(Dataset):
    """``(features[i], targets[i])`` pairs with features memory-mapped from a ``.npy`` file."""

    def __init__(self, features_path: str | Path, targets: np.ndarray):
        self.features_path = Path(features_path)
        self.features = np.load(self.features_path, mmap_mode="r")
        if len(self.features) != len(targets):
            raise ValueError(f"{features_path} has {len(self.features)} rows but {len(targets)} targets were given")
        self.targets = np.asarray(targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.features[index])), torch.as_tensor(self.targets[index])
