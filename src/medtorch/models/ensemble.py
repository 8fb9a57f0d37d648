"""A deep ensemble: members of one architecture trained from different seeds, logits averaged.

Averaging independently trained networks lowers the variance of the prediction and usually
improves AUROC and calibration (Lakshminarayanan et al. 2017); it costs k times the training
and inference. The pipeline builds one when ``train.ensemble`` is above 1.

>>> model = Ensemble([create_model("resnet18", in_channels=1, out_features=1) for _ in range(3)])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Ensemble(nn.Module):
    """The mean of its members' outputs (logits), so a task's scores apply to it unchanged."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)
