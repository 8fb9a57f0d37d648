"""Deep ensembles: the model averages its members; the pipeline trains, saves and reloads them."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import medtorch
from medtorch import create_model
from medtorch.models.ensemble import Ensemble


def test_an_ensemble_outputs_the_mean_of_its_members_logits():
    torch.manual_seed(0)
    members = [create_model("mlp", in_features=4, out_features=2, hidden=(8,)).eval() for _ in range(3)]
    x = torch.randn(5, 4)
    expected = sum(member(x) for member in members) / 3
    assert torch.allclose(Ensemble(members)(x), expected)


def test_an_ensemble_without_members_is_refused():
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])


def rows(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    frame["outcome"] = (frame.a + 0.5 * frame.b + rng.normal(0, 0.7, n) > 0).astype(int)
    return frame


def train(tmp_path, name: str, **settings):
    overrides = {"model": {"name": "mlp"}, "train": {"epochs": 3, **settings}, "evaluate": {"bootstrap": 0, "baselines": False, "calibration": "none"}}
    return medtorch.train(rows(), target="outcome", out=tmp_path / name, overrides=overrides, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ensembles")
    return {name: train(folder, name, **settings) for name, settings in {"seed0": {"seed": 0}, "pair": {"seed": 0, "ensemble": 2}}.items()}


def test_the_first_member_is_the_single_model_of_the_same_seed_and_the_second_differs(runs):
    """Members share the run's split; member i trains from seed + i."""
    x = torch.randn(20, 3)  # three standardised features
    first, second = runs["pair"].bundle.model.members
    assert torch.equal(first(x), runs["seed0"].bundle.model(x))
    assert not torch.allclose(second(x), first(x), atol=1e-3)


def test_an_ensemble_bundle_reloads_with_its_members_and_predicts_the_same(runs):
    folder = runs["pair"].out_dir
    config = json.loads((folder / "bundle" / "medtorch.json").read_text())
    assert config["model"]["members"] == 2
    reloaded = medtorch.load_bundle(folder / "bundle")
    assert isinstance(reloaded.model, Ensemble) and len(reloaded.model.members) == 2
    frame = rows(40, seed=5).drop(columns="outcome")
    np.testing.assert_allclose(reloaded.predict_scores(frame), runs["pair"].bundle.predict_scores(frame), atol=1e-6)


def test_each_member_is_logged_and_no_checkpoint_is_left_behind(runs):
    folder = runs["pair"].out_dir
    assert (folder / "train_log.csv").exists() and (folder / "train_log.member1.csv").exists()
    assert not list(folder.glob("checkpoint*.safetensors"))
    members = runs["pair"].metrics["training"]["members"]
    assert [m["seed"] for m in members] == [0, 1] and all(m["epochs_run"] == 3 for m in members)


def test_a_single_model_bundle_says_it_has_one_member(runs):
    config = json.loads((runs["seed0"].out_dir / "bundle" / "medtorch.json").read_text())
    assert config["model"]["members"] == 1 and not isinstance(runs["seed0"].bundle.model, Ensemble)


def test_the_model_card_and_report_say_the_model_is_an_ensemble(runs):
    folder = runs["pair"].out_dir
    assert json.loads((folder / "metrics.json").read_text())["model_card"]["members"] == 2
    assert "a deep ensemble of 2" in (folder / "report.html").read_text()
    assert "deep ensemble" not in (runs["seed0"].out_dir / "report.html").read_text()


def test_an_ensemble_run_reports_its_single_model_baselines(tmp_path):
    """The baselines (scikit-learn models) are one model each, whatever the main model's ensemble size."""
    overrides = {"model": {"name": "mlp"}, "train": {"epochs": 2, "ensemble": 2}, "evaluate": {"bootstrap": 0, "baselines": True}}
    run = medtorch.train(rows(), target="outcome", out=tmp_path / "run", overrides=overrides, progress=False)
    assert {"prior", "logistic_regression"} <= set(run.metrics["baselines"])
    assert run.metrics["baselines"]["logistic_regression"]["metrics"]["auroc"]["value"] > 0.7
