"""Data: records of any modality, group-aware splits, and the modality interface."""

from medtorch.data.base import Modality, Records, Sample, get_modality, list_modalities, register_modality
from medtorch.data.splits import (
    assert_no_group_leak,
    group_kfold,
    train_val_test_split,
)

__all__ = [
    "Modality",
    "Records",
    "Sample",
    "assert_no_group_leak",
    "get_modality",
    "group_kfold",
    "list_modalities",
    "register_modality",
    "train_val_test_split",
]
