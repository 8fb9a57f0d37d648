"""Training from disk: features written chunk by chunk, read batch by batch."""

import numpy as np
import pandas as pd
import pytest
import torch

from medtorch.config import DataConfig, TrainConfig
from medtorch.data.streaming import MemmapDataset
from medtorch.data.tabular import Tabular
from medtorch.registry import create_model
from medtorch.tasks import BinaryTask
from medtorch.training import Trainer


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300), "site": rng.choice(["x", "y"], 300)})
    frame.loc[::7, "a"] = np.nan
    frame["y"] = (frame["b"] + (frame["site"] == "x") > 0.5).astype(int)
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path, frame


def fitted_preprocessor(frame):
    records = Tabular().read(frame, DataConfig(target="y"))
    return Tabular().preprocessor(DataConfig()).fit(records), records


def test_write_features_in_chunks_equals_in_memory_transform(table, tmp_path):
    path, frame = table
    preprocessor, records = fitted_preprocessor(frame)
    written = preprocessor.write_features(path, tmp_path / "features.npy", chunksize=64)
    on_disk = np.load(written, mmap_mode="r")
    np.testing.assert_array_equal(on_disk, preprocessor.feature_matrix(records.inputs))


def test_trainer_on_memmap_dataset_matches_in_memory_training(table, tmp_path):
    path, frame = table
    preprocessor, records = fitted_preprocessor(frame)
    targets = records.target.astype(np.float32)
    features = preprocessor.write_features(path, tmp_path / "features.npy", chunksize=50)
    config = TrainConfig(epochs=3, seed=1, patience=0)
    weights = []
    for dataset in (MemmapDataset(features, targets), torch.utils.data.TensorDataset(preprocessor.transform(records.inputs), torch.from_numpy(targets))):
        torch.manual_seed(0)
        model = create_model("mlp", in_features=preprocessor.model_kwargs()["in_features"], out_features=1, hidden=(8,))
        Trainer(model, BinaryTask([0, 1], 1), config, batch_size=32, progress=False).fit(dataset)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1])


def test_memmap_dataset_refuses_row_count_mismatch(table, tmp_path):
    path, frame = table
    preprocessor, _ = fitted_preprocessor(frame)
    features = preprocessor.write_features(path, tmp_path / "features.npy")
    with pytest.raises(ValueError, match="rows"):
        MemmapDataset(features, np.zeros(5))
