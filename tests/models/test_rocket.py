"""MiniRocket: its transform, its classifier, and its place in the signal pipeline and bundles."""

from __future__ import annotations

import numpy as np
import pytest

from medtorch.errors import ConfigError
from medtorch.models.rocket import MiniRocket, MiniRocketClassifier
from medtorch.registry import create_model, get_model_entry


def _waves(n: int, length: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sines and square waves of the same frequency, amplitude range and phase jitter: their means, spreads
    and spectra's main peak agree, so only the waveform's shape tells them apart."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    sine = np.sin(2 * np.pi * t / 32 + phase)
    labels = np.arange(n) % 2
    waves = np.where(labels[:, None] == 1, np.sign(sine), sine * np.sqrt(2))  # both of unit variance
    return (waves + 0.2 * rng.normal(size=waves.shape)).astype(np.float32), labels


def test_transform_gives_about_n_features_shares_between_zero_and_one():
    x, _ = _waves(12)
    rocket = MiniRocket(n_features=840, seed=0).fit(x)
    features = rocket.transform(x)
    assert features.shape == (12, 840)
    assert features.min() >= 0 and features.max() <= 1
    assert 0.2 < features.mean() < 0.8  # biases are quantiles of the training responses, not extremes


def test_transform_is_fixed_by_the_seed_and_changes_with_it():
    x, _ = _waves(8)
    first = MiniRocket(n_features=420, seed=1).fit(x).transform(x)
    np.testing.assert_array_equal(first, MiniRocket(n_features=420, seed=1).fit(x).transform(x))
    assert not np.array_equal(first, MiniRocket(n_features=420, seed=2).fit(x).transform(x))


def test_several_channels_are_read_and_each_kernel_sees_some_of_them():
    x = np.random.default_rng(0).normal(size=(6, 3, 128)).astype(np.float32)
    rocket = MiniRocket(n_features=420, seed=0).fit(x)
    assert rocket.transform(x).shape == (6, 420)
    assert all(mask.sum(axis=1).min() >= 1 for mask in rocket.channels_)
    assert any((mask.sum(axis=1) > 1).any() for mask in rocket.channels_)


def test_a_window_shorter_than_a_kernel_is_refused():
    with pytest.raises(ValueError, match="length"):
        MiniRocket().fit(np.zeros((4, 1, 5)))


def test_the_classifier_tells_waveforms_apart_that_window_statistics_cannot():
    x, y = _waves(80)
    test_x, test_y = _waves(40, seed=1)
    noise = np.random.default_rng(2).normal(size=(120, 3)).astype(np.float32)  # hand-made features with no signal
    rows, test_rows = np.hstack([x, noise[:80]]), np.hstack([test_x, noise[80:]])
    model = MiniRocketClassifier(in_channels=1, length=256, n_extra=3, n_features=840, trees=0).fit(rows, y)
    assert (model.predict(test_rows) == test_y).mean() > 0.95
    with_trees = MiniRocketClassifier(in_channels=1, length=256, n_extra=3, n_features=840, trees=50).fit(rows, y)
    assert (with_trees.predict(test_rows) == test_y).mean() > 0.8  # the trees' chance votes only halve the margin
    np.testing.assert_allclose(with_trees.predict_proba(test_rows).sum(axis=1), 1.0, rtol=1e-6)


def test_rows_of_the_wrong_width_are_refused():
    x, y = _waves(10)
    model = MiniRocketClassifier(in_channels=1, length=256, n_extra=0, n_features=420).fit(x, y)
    with pytest.raises(ValueError, match="256 samples"):
        model.predict_proba(x[:, :200])


def test_minirocket_reads_the_samples_and_refuses_targets_it_cannot_classify():
    assert get_model_entry("minirocket").reads == "samples"
    assert get_model_entry("extra_trees").reads == "features"
    with pytest.raises(ConfigError, match="regression"):
        create_model("minirocket", task_type="regression", in_channels=1, length=256)


def test_a_window_run_with_minirocket_fits_on_the_samples_and_its_bundle_round_trips(tmp_path):
    import medtorch
    from medtorch.bundle import load_bundle

    waves, labels = _waves(24, length=1000)
    for index, (wave, label) in enumerate(zip(waves, labels)):
        folder = tmp_path / "data" / ("square" if label else "sine")
        folder.mkdir(parents=True, exist_ok=True)
        np.savetxt(folder / f"r{index}.txt", wave)
    overrides = {
        "data": {"record_sampling_rate": 100.0},
        "model": {"name": "minirocket", "n_features": 840, "trees": 20},
        "evaluate": {"bootstrap": 0, "baselines": False},
    }
    run = medtorch.train(tmp_path / "data", out=tmp_path / "run", overrides=overrides, progress=False)
    bundle = run.bundle
    assert bundle.model.rocket_.transform(np.zeros((1, 1, bundle.preprocessor.length))).shape == (1, 840)
    records = bundle.read_labeled(tmp_path / "data")
    scores = bundle.predict_scores(records.inputs)
    assert np.mean((scores > 0.5) == (records.target == "square")) > 0.9
    reloaded = load_bundle(tmp_path / "run" / "bundle")
    np.testing.assert_allclose(reloaded.predict_scores(records.inputs), scores, rtol=1e-6)
