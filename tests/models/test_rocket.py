"""MiniRocket: its transform, its classifier, and its place in the signal pipeline and bundles."""

from __future__ import annotations

import numpy as np
import pytest

from medtorch.errors import ConfigError
from medtorch.models.rocket import MiniRocket, MiniRocketClassifier, _kernels
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


def _response(x: np.ndarray, kernel: int, dilation: int) -> np.ndarray:
    """One kernel's zero-padded response, by the definition: sum_j w_j x[t + (j - 4) * dilation]."""
    weights, padded = _kernels()[kernel], np.pad(x, 4 * dilation)
    return np.array([sum(weights[j] * padded[t + j * dilation] for j in range(9)) for t in range(len(x))])


def test_each_feature_is_the_share_of_its_kernels_response_above_its_bias():
    """Checked against the definition, loop by loop: kernel k at dilation index i counts the whole padded
    response when k + i is even and only the part clear of the padding when it is odd."""
    x, _ = _waves(6, length=120)
    rocket = MiniRocket(n_features=168, seed=0).fit(x)
    features = rocket.transform(x)
    assert features.shape == (6, 168)
    column = 0
    for index, dilation in enumerate(rocket.dilations_):
        biases = rocket.biases_[index]
        for kernel in (0, 1, 83):
            response = _response(x[2], kernel, dilation)
            if (kernel + index) % 2:
                response = response[4 * dilation : len(response) - 4 * dilation]
            for j, bias in enumerate(biases[kernel]):
                assert features[2, column + kernel * biases.shape[1] + j] == pytest.approx(np.mean(response > bias), abs=1e-6)
        column += biases.size


def test_features_are_spread_over_dilations_and_each_kernel_gets_its_own_biases():
    x, _ = _waves(12)
    rocket = MiniRocket(n_features=840, seed=0).fit(x)
    assert rocket.dilations_[0] == 1 and rocket.dilations_[-1] <= (256 - 1) / 8 < 2 * rocket.dilations_[-1]
    assert sum(b.size for b in rocket.biases_) == 840
    first = rocket.biases_[0]
    assert len(np.unique(first)) > 0.9 * first.size  # quantiles differ from kernel to kernel, not one set shared
    assert 0.3 < rocket.transform(x).mean() < 0.7  # biases sit inside the responses, not at their extremes


def test_transform_is_fixed_by_the_seed_and_changes_with_it():
    x, _ = _waves(8)
    first = MiniRocket(n_features=420, seed=1).fit(x).transform(x)
    np.testing.assert_array_equal(first, MiniRocket(n_features=420, seed=1).fit(x).transform(x))
    assert not np.array_equal(first, MiniRocket(n_features=420, seed=2).fit(x).transform(x))


def test_a_kernel_reads_only_the_channels_drawn_for_it():
    x = np.random.default_rng(0).normal(size=(6, 3, 128)).astype(np.float32)
    rocket = MiniRocket(n_features=420, seed=0).fit(x)
    assert rocket.transform(x).shape == (6, 420)
    assert any((mask.sum(axis=1) > 1).any() for mask in rocket.channels_)  # some kernels sum several leads
    for mask in rocket.channels_:
        mask[:] = 0
        mask[:, 0] = 1  # every kernel on the first lead alone
    changed = x.copy()
    changed[:, 1:] = np.random.default_rng(1).normal(size=changed[:, 1:].shape)
    np.testing.assert_array_equal(rocket.transform(x), rocket.transform(changed))
    changed[:, 0] *= -1
    assert not np.array_equal(rocket.transform(x), rocket.transform(changed))


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


def test_three_classes_with_trees_and_sample_weights():
    rng = np.random.default_rng(0)
    t = np.arange(256)
    labels = np.arange(90) % 3
    period = np.array([16, 32, 64])[labels][:, None]
    waves = np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3, size=(90, 1))) + 0.3 * rng.normal(size=(90, 256))
    rows = np.hstack([waves, labels[:, None] + 0.1 * rng.normal(size=(90, 1))]).astype(np.float32)  # one telling feature
    model = MiniRocketClassifier(in_channels=1, length=256, n_extra=1, n_features=420, trees=30)
    model.fit(rows[:60], labels[:60], sample_weight=np.where(labels[:60] == 2, 2.0, 1.0))
    assert model.predict_proba(rows[60:]).shape == (30, 3)
    assert (model.predict(rows[60:]) == labels[60:]).mean() > 0.9


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


def test_a_window_regression_leaves_minirocket_out_of_the_default_candidates():
    from medtorch.config import parse_config
    from medtorch.data.signals import Signals
    from medtorch.pipeline import resolve_candidates
    from medtorch.tasks import infer_task

    def names(target: np.ndarray) -> list[str]:
        return [c.model.name for c in resolve_candidates(parse_config({"data": {"unit": "window"}}), Signals(), infer_task(target), n_train=30)]

    assert "minirocket" in names(np.array(["a", "b", "c"] * 10))
    assert "minirocket" not in names(np.linspace(0, 1, 30)) and "extra_trees" in names(np.linspace(0, 1, 30))


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
