"""Exact resume after a real kill: the CLI run is SIGKILLed mid-training, rerun, and must end
with the weights of a run that was never interrupted, bit for bit."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

EPOCHS = 30
KILL_AFTER_EPOCHS = 5
# Early stopping off (patience 0) so both runs train all 30 epochs; batch 16 makes an epoch
# long enough (~75 steps) that the kill lands well before the end; no bootstrap or baselines,
# which only cost time here.
CONFIG = """\
train: {patience: 0, batch_size: 16}
evaluate: {bootstrap: 0, baselines: false}
"""


def command(data, config, out):
    return [
        sys.executable, "-m", "medtorch", "train", "--data", str(data), "--target", "y", "--out", str(out),
        "--model", "mlp", "--epochs", str(EPOCHS), "--config", str(config), "--quiet",
    ]  # fmt: skip


def environment():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def logged_epochs(folder) -> list[int]:
    try:
        with open(folder / "train_log.csv", newline="") as handle:
            return [int(row["epoch"]) for row in csv.DictReader(handle)]
    except FileNotFoundError:
        return []


def model_tensors(folder):
    return load_file(folder / "bundle" / "model.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Folder A: an uninterrupted run. Folder B: the same command, SIGKILLed after a few epochs
    (its state then recorded), then rerun to completion."""
    root = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6))
    y = (x[:, 0] + 0.5 * x[:, 1] - 0.5 * x[:, 2] + rng.normal(scale=0.8, size=len(x)) > 0).astype(int)
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)]).assign(y=y)
    data, config = root / "data.csv", root / "config.yaml"
    table.to_csv(data, index=False)
    config.write_text(CONFIG)
    a, b = root / "A", root / "B"

    subprocess.run(command(data, config, a), check=True, env=environment(), capture_output=True, timeout=240)

    stderr = (root / "killed_run_stderr.txt").open("w")
    process = subprocess.Popen(command(data, config, b), env=environment(), stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 240
    while len(logged_epochs(b)) < KILL_AFTER_EPOCHS and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    returncode = process.wait(timeout=30)
    stderr.close()
    killed = {
        "returncode": returncode,
        "epochs": logged_epochs(b),
        "metrics": (b / "metrics.json").exists(),
        "checkpoint": (b / "checkpoint.safetensors").exists(),
    }

    resumed = subprocess.run(command(data, config, b), env=environment(), capture_output=True, text=True, timeout=240)
    return {"a": a, "b": b, "killed": killed, "resumed": resumed}


def test_killed_run_is_left_unfinished_with_a_checkpoint(runs):
    killed = runs["killed"]

    assert killed["returncode"] == -signal.SIGKILL
    assert not killed["metrics"]
    assert killed["checkpoint"]
    assert KILL_AFTER_EPOCHS <= len(killed["epochs"]) < EPOCHS


def test_rerun_of_a_killed_run_completes(runs):
    assert runs["resumed"].returncode == 0, runs["resumed"].stderr
    assert (runs["b"] / "metrics.json").exists()
    assert not (runs["b"] / "checkpoint.safetensors").exists()


def test_rerun_resumes_from_the_checkpoint_instead_of_starting_over(runs):
    training = json.loads((runs["b"] / "metrics.json").read_text())["training"]

    assert training["resumed_from_epoch"] >= len(runs["killed"]["epochs"])
    assert training["epochs_run"] == EPOCHS


def test_killed_and_resumed_run_ends_with_the_uninterrupted_runs_weights(runs):
    uninterrupted, resumed = model_tensors(runs["a"]), model_tensors(runs["b"])

    assert uninterrupted.keys() == resumed.keys()
    for name in uninterrupted:
        assert uninterrupted[name].dtype == resumed[name].dtype
        assert uninterrupted[name].numpy().tobytes() == resumed[name].numpy().tobytes(), name


def test_killed_and_resumed_run_logs_each_epoch_once(runs):
    assert logged_epochs(runs["b"]) == list(range(EPOCHS))


def test_killed_and_resumed_run_logs_the_uninterrupted_losses(runs):
    def losses(folder):
        with open(folder / "train_log.csv", newline="") as handle:
            return [(row["train_loss"], row["val_loss"], row["lr"]) for row in csv.DictReader(handle)]

    assert losses(runs["b"]) == losses(runs["a"])


def test_killed_and_resumed_run_reports_the_uninterrupted_metrics(runs):
    def metrics(folder):
        return json.loads((folder / "metrics.json").read_text())["metrics"]

    assert metrics(runs["b"]) == metrics(runs["a"])
