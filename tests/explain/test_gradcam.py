"""Grad-CAM on a synthetic task whose answer is known: a bright square marks the positive class."""

import numpy as np
import pytest

import medtorch
from medtorch.explain import explain_image, save_overlay
from medtorch.registry import list_models

SIZE, SQUARE = 28, 7


def squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 noise images; positives carry a bright square at a random place (returned as its corner)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 90, size=(n, SIZE, SIZE)).astype(np.uint8)
    labels = np.arange(n) % 2
    corners = rng.integers(0, SIZE - SQUARE, size=(n, 2))
    for image, label, (row, col) in zip(images, labels, corners):
        if label:
            image[row : row + SQUARE, col : col + SQUARE] = 230
    return images, labels, corners


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("squares")
    arrays = {}
    for split, n, seed in (("train", 320, 0), ("val", 80, 1), ("test", 80, 2)):
        images, labels, _ = squares(n, seed)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
    np.savez(folder / "squares.npz", **arrays)
    overrides = {"model": {"name": "small_cnn"}, "train": {"epochs": 6}, "evaluate": {"bootstrap": 0, "baselines": False}}
    run = medtorch.train(folder / "squares.npz", out=folder / "run", overrides=overrides, progress=False)
    assert run.metrics["metrics"]["auroc"]["value"] > 0.95
    return folder / "run"


@pytest.fixture(scope="module")
def bundle(run_folder):
    return medtorch.load_bundle(run_folder / "bundle")


def test_heatmap_has_the_image_shape_and_is_finite_in_unit_range(bundle):
    images, _, _ = squares(4, seed=5)
    explanation = explain_image(bundle, images[1])
    assert explanation.heatmap.shape == (SIZE, SIZE)
    assert np.isfinite(explanation.heatmap).all()
    assert explanation.heatmap.min() >= 0 and explanation.heatmap.max() == pytest.approx(1)


def test_heatmap_peaks_inside_the_square_that_decides_the_class(bundle):
    images, labels, corners = squares(40, seed=7)
    hits = 0
    for image, label, (row, col) in zip(images, labels, corners):
        if not label:
            continue
        peak_row, peak_col = np.unravel_index(np.argmax(explain_image(bundle, image).heatmap), (SIZE, SIZE))
        hits += row - 2 <= peak_row < row + SQUARE + 2 and col - 2 <= peak_col < col + SQUARE + 2
    assert hits >= 16  # of 20 positives


def test_explanation_reports_the_prediction_and_writes_an_overlay(bundle, tmp_path):
    images, _, _ = squares(2, seed=9)
    explanation = explain_image(bundle, images[1])
    assert explanation.label == 1 and explanation.probability > 0.5
    path = save_overlay(explanation, tmp_path / "heatmap.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_shows_grad_cam_overlays_of_test_predictions(run_folder):
    page = (run_folder / "report.html").read_text()
    section = page.split("Grad-CAM: where the model looked", 1)[1]
    assert section.count("data:image/png;base64,") >= 3
    assert "correct: true 1, predicted 1" in section


def test_test_time_augmentation_averages_augmented_copies_repeatably(bundle):
    images, _, _ = squares(6, seed=11)
    plain = bundle.predict_scores(images)
    bundle.test_time_augmentation = 4
    try:
        first, second = bundle.predict_scores(images), bundle.predict_scores(images)
    finally:
        bundle.test_time_augmentation = 0
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, plain)
    assert np.all((first >= 0) & (first <= 1))


def test_an_ensembles_heatmap_peaks_inside_the_square(run_folder, tmp_path):
    from medtorch.models.ensemble import Ensemble

    overrides = {"model": {"name": "small_cnn"}, "train": {"epochs": 6, "ensemble": 2}, "evaluate": {"bootstrap": 0, "baselines": False}}
    run = medtorch.train(run_folder.parent / "squares.npz", out=tmp_path / "pair", overrides=overrides, progress=False)
    assert isinstance(run.bundle.model, Ensemble)
    images, labels, corners = squares(40, seed=7)
    hits = 0
    for image, (row, col) in zip(images[labels == 1], corners[labels == 1]):
        heatmap = explain_image(run.bundle, image).heatmap
        assert heatmap.shape == (SIZE, SIZE) and np.isfinite(heatmap).all()
        peak_row, peak_col = np.unravel_index(np.argmax(heatmap), (SIZE, SIZE))
        hits += row - 2 <= peak_row < row + SQUARE + 2 and col - 2 <= peak_col < col + SQUARE + 2
    assert hits >= 16  # of 20 positives


@pytest.mark.parametrize("name", list_models(modality="image"))
def test_every_image_model_gives_a_finite_heatmap_of_the_image_shape(name, untrained_image_bundle):
    """Each model names (or lets Grad-CAM find) a spatial layer; an untrained net is enough to check the plumbing."""
    images, _, _ = squares(2, seed=3)
    explanation = explain_image(untrained_image_bundle(name), images[1])
    assert explanation.heatmap.shape == (SIZE, SIZE)
    assert np.isfinite(explanation.heatmap).all() and 0 <= explanation.heatmap.min() <= explanation.heatmap.max() <= 1
