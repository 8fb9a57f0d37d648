"""Leakage and data checks: duplicates across and within splits, shared patients, missingness,
and the perceptual hashes that find near-duplicate images."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from medtorch.config import DataConfig
from medtorch.data.base import Records
from medtorch.data.imaging import Imaging, perceptual_hash
from medtorch.data.tabular import Tabular
from medtorch.evaluation.checks import NEAR_DUPLICATE_BITS, data_checks, nearest_distance

SPLITS = {"train": np.arange(0, 60), "val": np.arange(60, 80), "test": np.arange(80, 100)}


def _bits(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


# --------------------------------------------------------------------------- tables
def _table(n: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(20, 90, n).astype(float),
            "sbp": rng.normal(130, 15, n).round(3),
            "glucose": rng.normal(100, 20, n).round(3),
            "smoker": rng.choice(["never", "former", "current"], n),
        }
    )


def _leaky_records() -> Records:
    frame = _table()
    frame.loc[[3, 40], "sbp"] = np.nan  # train
    frame.loc[[65], "sbp"] = np.nan  # val
    frame.loc[[90, 91, 92, 93, 94], "glucose"] = np.nan  # test
    # three training rows copied into the test split (one of them with a missing value)
    frame.loc[[80, 81, 82]] = frame.loc[[3, 4, 5]].to_numpy()
    # one training row repeated within the training split
    frame.loc[11] = frame.loc[10]
    patients = np.array([f"P{i:03d}" for i in range(100)], dtype=object)
    patients[[85, 86]] = patients[5]  # one patient in both test and train (two visits in test)
    patients[70] = patients[7]  # one patient in both val and train
    return Records(inputs=frame, target=np.zeros(100), groups=patients)


@pytest.fixture(scope="module")
def leaky():
    records = _leaky_records()
    return records, data_checks(Tabular(), records, None, SPLITS)


def test_rows_copied_from_train_into_test_are_counted_exactly(leaky):
    _, checks = leaky
    assert checks["exact_duplicates"] == {
        "val-train": 0,
        "test-train": 3,
        "test-val": 0,
        "within_train": 1,
        "within_val": 0,
        "within_test": 0,
    }


def test_tables_have_no_perceptual_hashes(leaky):
    _, checks = leaky
    assert "near_duplicates" not in checks


def test_duplicates_within_a_split_count_every_extra_copy():
    frame = _table(30)
    frame.loc[[1, 2, 3]] = frame.loc[0].to_numpy()  # four identical rows: three extra
    frame.loc[21] = frame.loc[20]
    splits = {"train": np.arange(20), "test": np.arange(20, 30)}
    checks = data_checks(Tabular(), Records(inputs=frame), None, splits)
    assert checks["exact_duplicates"] == {"test-train": 0, "within_train": 3, "within_test": 1}
    assert checks["warnings"] == []  # repeats inside one split do not leak
    assert checks["patient_overlap"] is None


def test_a_copy_in_test_of_a_row_seen_in_train_counts_once_per_test_sample():
    frame = _table(30)
    frame.loc[[20, 21]] = frame.loc[[0, 0]].to_numpy()
    checks = data_checks(Tabular(), Records(inputs=frame), None, {"train": np.arange(20), "test": np.arange(20, 30)})
    assert checks["exact_duplicates"]["test-train"] == 2
    assert checks["exact_duplicates"]["within_test"] == 1


def test_a_row_differing_in_one_value_is_not_a_duplicate():
    frame = _table(30)
    frame.loc[20] = frame.loc[0]
    frame.loc[20, "smoker"] = "never" if frame.loc[0, "smoker"] != "never" else "current"
    checks = data_checks(Tabular(), Records(inputs=frame), None, {"train": np.arange(20), "test": np.arange(20, 30)})
    assert checks["exact_duplicates"]["test-train"] == 0


def test_patient_overlap_counts_shared_patients_not_rows(leaky):
    _, checks = leaky
    assert checks["patient_overlap"] == {"val-train": 1, "test-train": 1, "test-val": 0}


def test_warnings_mention_duplicates_and_shared_patients(leaky):
    _, checks = leaky
    warnings = checks["warnings"]
    assert len(warnings) == 3
    assert any("3 samples of test" in w and "train" in w for w in warnings)
    assert any("1 patients" in w and "val" in w and "train" in w for w in warnings)
    assert any("1 patients" in w and "test" in w and "train" in w for w in warnings)


def test_missingness_per_split_matches_hand_computed_fractions(leaky):
    records, checks = leaky
    missing = checks["missingness"]
    # row 80 is a copy of row 3, whose sbp is missing
    assert missing == {
        "glucose": {"train": 0.0, "val": 0.0, "test": 0.25},
        "sbp": {"train": round(2 / 60, 4), "val": 0.05, "test": 0.05},
    }
    assert list(missing) == ["glucose", "sbp"]  # most missing overall first: 5 rows against 4
    assert "age" not in missing and "smoker" not in missing


def test_missingness_lists_the_most_missing_column_first():
    frame = _table(40)
    frame.loc[:1, "age"] = np.nan
    frame.loc[:9, "smoker"] = None
    checks = data_checks(Tabular(), Records(inputs=frame), None, {"train": np.arange(30), "test": np.arange(30, 40)})
    assert list(checks["missingness"]) == ["smoker", "age"]
    assert checks["missingness"]["smoker"] == {"train": round(10 / 30, 4), "test": 0.0}


def test_clean_data_has_no_warnings_and_no_missingness():
    records = Records(inputs=_table(), groups=np.arange(100))
    checks = data_checks(Tabular(), records, None, SPLITS)
    assert checks["warnings"] == []
    assert checks["missingness"] == {}
    assert set(checks["exact_duplicates"].values()) == {0}
    assert set(checks["patient_overlap"].values()) == {0}


def test_an_empty_split_is_left_out_of_the_pairs():
    records = Records(inputs=_table(), groups=np.arange(100))
    checks = data_checks(Tabular(), records, None, {"train": np.arange(80), "val": np.arange(80, 100), "test": np.array([], dtype=int)})
    assert set(checks["exact_duplicates"]) == {"val-train", "within_train", "within_val"}
    assert checks["patient_overlap"] == {"val-train": 0}


# --------------------------------------------------------------------------- perceptual hashes
def scene(seed: int, size: int = 64) -> np.ndarray:
    """A structured synthetic picture in [0.1, 0.9]: a tilted gradient, three ellipses and two rectangles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    image = 0.3 * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy) + 0.3
    for _ in range(3):
        cy, cx = rng.uniform(0.15, 0.85, 2)
        ry, rx = rng.uniform(0.08, 0.3, 2)
        image += rng.uniform(-0.4, 0.5) * ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) < 1)
    for _ in range(2):
        y0, x0 = rng.uniform(0, 0.7, 2)
        h, w = rng.uniform(0.1, 0.3, 2)
        image += rng.uniform(-0.4, 0.5) * ((yy > y0) & (yy < y0 + h) & (xx > x0) & (xx < x0 + w))
    image = (image - image.min()) / (image.max() - image.min())
    return 0.1 + 0.8 * image


def _disc(cy: float, cx: float, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    return 0.2 + 0.6 * (((yy - cy) ** 2 + (xx - cx) ** 2) < 0.04) + 0.1 * xx * yy


SCENES = [scene(seed) for seed in range(12)]


def test_perceptual_hash_is_a_deterministic_64_bit_integer():
    first = perceptual_hash(SCENES[0])
    assert isinstance(first, int)
    assert 0 <= first < 2**64
    assert perceptual_hash(SCENES[0].copy()) == first
    assert bin(first).count("1") > 8  # not degenerate


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda im: im + 0.08, id="brighter"),
        pytest.param(lambda im: 0.8 * im, id="darker"),
        pytest.param(lambda im: (im - 0.5) * 1.15 + 0.5, id="more-contrast"),
        pytest.param(lambda im: 0.5 + (im - 0.5) * 0.7, id="less-contrast"),
        pytest.param(lambda im: im + np.random.default_rng(7).normal(0, 0.02, im.shape), id="noised"),
        pytest.param(lambda im: im.reshape(32, 2, 32, 2).mean(axis=(1, 3)), id="half-size"),
    ],
)
def test_altered_copies_hash_within_the_near_duplicate_bits(change):
    for image in SCENES:
        assert _bits(perceptual_hash(image), perceptual_hash(change(image))) <= NEAR_DUPLICATE_BITS


def test_unrelated_structured_pictures_hash_far_apart():
    hashes = [perceptual_hash(image) for image in SCENES]
    distances = [_bits(a, b) for a, b in combinations(hashes, 2)]
    assert min(distances) > 10
    # a shape moved across the picture is a different picture
    assert _bits(perceptual_hash(_disc(0.3, 0.3)), perceptual_hash(_disc(0.7, 0.65))) > 10


def test_random_noise_pictures_hash_far_apart():
    rng = np.random.default_rng(0)
    hashes = [perceptual_hash(rng.random((64, 64))) for _ in range(6)]
    assert min(_bits(a, b) for a, b in combinations(hashes, 2)) > 10


def test_nearest_distance_matches_hand_counted_bits():
    references = np.array([0b0000, 0b1111, 0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64)
    queries = np.array(
        [
            0b0000,  # equal to the first reference
            0b0101,  # 2 bits from 0b0000 and 2 from 0b1111
            0b1110,  # 1 bit from 0b1111
            0xFFFF_FFFF_FFFF_FFF0,  # 4 bits from all ones (60 from 0b0000, 64 from 0b1111)
            0x8000_0000_0000_0000,  # 1 bit from 0b0000: the top bit counts too
        ],
        dtype=np.uint64,
    )
    assert nearest_distance(queries, references).tolist() == [0, 2, 1, 4, 1]
    assert nearest_distance(queries, references[1:2]).tolist() == [4, 2, 1, 64, 5]


def test_nearest_distance_in_chunks_equals_one_block_and_handles_no_references():
    rng = np.random.default_rng(3)
    queries = rng.integers(0, 2**63, 37, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 37, dtype=np.uint64)
    references = rng.integers(0, 2**63, 11, dtype=np.uint64)
    brute = [min(_bits(int(q), int(r)) for r in references) for q in queries]
    assert nearest_distance(queries, references, chunk=5).tolist() == brute
    assert nearest_distance(queries, references).tolist() == brute
    assert nearest_distance(queries, references[:0]).tolist() == [64] * 37


# --------------------------------------------------------------------------- image fingerprints
def _image_records() -> tuple[Records, dict[str, np.ndarray]]:
    """Ten distinct 28x28 pictures, then an exact copy of #2 and a slightly noised copy of #3 (the test split)."""
    pictures = [np.round(scene(seed, 28) * 255).astype(np.uint8) for seed in range(10)]
    noise = np.random.default_rng(1).normal(0, 2, (28, 28))
    pictures.append(pictures[2].copy())
    pictures.append(np.clip(pictures[3] + noise, 0, 255).round().astype(np.uint8))
    inputs = np.stack(pictures)
    assert inputs.shape == (12, 28, 28) and inputs.dtype == np.uint8
    assert not np.array_equal(inputs[11], inputs[3])
    splits = {"train": np.arange(8), "val": np.arange(8, 10), "test": np.array([10, 11])}
    return Records(inputs=inputs, target=np.zeros(12)), splits


@pytest.fixture(scope="module")
def image_checks():
    records, splits = _image_records()
    preprocessor = Imaging().preprocessor(DataConfig()).fit(records)
    return records, preprocessor, splits, data_checks(Imaging(), records, preprocessor, splits)


def test_image_fingerprints_find_the_exact_copy_and_the_noised_copy(image_checks):
    records, preprocessor, _, _ = image_checks
    fingerprints = Imaging().fingerprints(records, preprocessor)
    assert len(fingerprints.exact) == len(fingerprints.perceptual) == 12
    assert fingerprints.exact[10] == fingerprints.exact[2]
    assert fingerprints.exact[11] != fingerprints.exact[3]
    assert len(set(fingerprints.exact.tolist())) == 11
    assert int(fingerprints.perceptual[10]) == int(fingerprints.perceptual[2])
    assert _bits(int(fingerprints.perceptual[11]), int(fingerprints.perceptual[3])) <= NEAR_DUPLICATE_BITS
    originals = [int(h) for h in fingerprints.perceptual[:10]]
    assert min(_bits(a, b) for a, b in combinations(originals, 2)) > 10


def test_image_checks_count_exact_and_near_duplicates_across_splits(image_checks):
    _, _, _, checks = image_checks
    assert checks["exact_duplicates"] == {
        "val-train": 0,
        "test-train": 1,
        "test-val": 0,
        "within_train": 0,
        "within_val": 0,
        "within_test": 0,
    }
    # the exact copy is also a near copy; the noised copy is only a near copy
    assert checks["near_duplicates"] == {"val-train": 0, "test-train": 2, "test-val": 0}
    assert checks["near_duplicate_bits"] == NEAR_DUPLICATE_BITS
    assert checks["patient_overlap"] is None
    assert "missingness" not in checks
    assert sorted(checks["warnings"]) == sorted(
        ["1 samples of test also appear exactly in train", "2 samples of test have a near-duplicate in train"]
    )


def test_image_copy_of_a_validation_picture_is_reported_against_val(image_checks):
    records, preprocessor, _, _ = image_checks
    splits = {"train": np.array([0, 1, 2, 4, 5, 6, 7]), "val": np.array([8, 9, 3]), "test": np.array([11])}
    checks = data_checks(Imaging(), records, preprocessor, splits)
    assert checks["exact_duplicates"]["test-val"] == 0
    assert checks["near_duplicates"] == {"val-train": 0, "test-train": 0, "test-val": 1}


def test_signal_quality_flags_are_shared_per_split_and_warned_about():
    from medtorch.data.base import Records
    from medtorch.data.signals import SignalPreprocessor, Signals

    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 2 * 50 + 7)).astype(np.float32)
    features[[2, 15], :50] = 0.0  # lead 1 off in one training and one test sample
    features[16, 50:100] *= 40  # an artefact in test
    records = Records(inputs=features, target=np.array(["N"] * 20, dtype=object), groups=np.repeat(np.arange(10), 2))
    preprocessor = SignalPreprocessor(leads=2, length=50)
    checks = data_checks(Signals(), records, preprocessor, {"train": np.arange(10), "test": np.arange(10, 20)})
    assert checks["quality"] == {
        "flat signal (lead off)": {"train": 0.1, "test": 0.1},
        "extreme amplitude (artefact)": {"train": 0.0, "test": 0.1},
    }
    assert any(w.startswith("flat signal (lead off): 10.0% of train") for w in checks["warnings"])
