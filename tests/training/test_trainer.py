"""The trainer on small synthetic tables: it learns, follows its config, stops early, checkpoints, resumes."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score
from torch.utils.data import TensorDataset

from medtorch import create_model
from medtorch.config import TrainConfig
from medtorch.errors import MedtorchError
from medtorch.tasks import BinaryTask, MulticlassTask
from medtorch.training import Trainer
from medtorch.training import checkpoint as ckpt
from medtorch.training import trainer as trainer_module

FEATURES = 5


# ------------------------------------------------------------------ data and helpers
def separable(n: int, seed: int, features: int = FEATURES) -> TensorDataset:
    """A binary target that a linear boundary separates exactly: y = [x0 + x1 > 0]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return TensorDataset(x, (x[:, 0] + x[:, 1] > 0).float())


def three_classes(n: int, seed: int) -> TensorDataset:
    """Three classes, each the largest of three features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g)
    return TensorDataset(x, x[:, :3].argmax(dim=1))


def noisy(n: int, seed: int, features: int = 20) -> TensorDataset:
    """y = [x0 > 0] with 30% of labels flipped: a wide network overfits it within a few epochs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, 0] > 0).float()
    flip = torch.rand(n, generator=g) < 0.3
    y[flip] = 1 - y[flip]
    return TensorDataset(x, y)


def imbalanced(n: int, seed: int, positive_rate: float = 0.08) -> TensorDataset:
    """Rare positives whose features overlap the negatives' (shifted by one SD in x0)."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < positive_rate).float()
    x = torch.randn(n, FEATURES, generator=g)
    x[:, 0] += y
    return TensorDataset(x, y)


def binary_task() -> BinaryTask:
    return BinaryTask([0.0, 1.0], 1.0)


def mlp(seed: int = 0, features: int = FEATURES, out: int = 1, hidden: tuple[int, ...] = (16,)) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", in_features=features, out_features=out, hidden=hidden, dropout=0.0)


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 10, "device": "cpu", "patience": 0, **overrides})


def trainer(model: torch.nn.Module, cfg: TrainConfig, task=None, **kwargs) -> Trainer:
    kwargs = {"lr": 1e-2, "batch_size": 32, "progress": False, **kwargs}
    return Trainer(model, task or binary_task(), cfg, **kwargs)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def sensitivity(model: torch.nn.Module, data: TensorDataset) -> float:
    """Share of positives scored above 0.5."""
    x, y = data.tensors
    with torch.no_grad():
        predicted = model(x).reshape(-1).sigmoid() > 0.5
    return predicted[y == 1].float().mean().item()


def record_learning_rates(run: Trainer) -> list[float]:
    """The learning rate of every optimizer step ``run`` takes from now on."""
    seen: list[float] = []
    run.optimizer.register_step_pre_hook(lambda optimizer, args, kwargs: seen.append(optimizer.param_groups[0]["lr"]))
    return seen


def read_log(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class Interrupted(Exception):
    """Stands for a kill right after a checkpoint was written."""


def interrupt_after_epoch(monkeypatch: pytest.MonkeyPatch, last_epoch: int) -> None:
    """Make the trainer die right after it has saved the checkpoint of ``last_epoch``."""
    real_save = ckpt.save_checkpoint

    def save_then_die(path, tensors, state):
        real_save(path, tensors, state)
        if state["progress"]["epoch"] == last_epoch:
            raise Interrupted

    monkeypatch.setattr(ckpt, "save_checkpoint", save_then_die)


# ------------------------------------------------------------------ learning
def test_training_loss_falls_on_separable_data():
    result = trainer(mlp(), config()).fit(separable(300, 1), separable(200, 2))

    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]


def test_validation_auroc_is_high_on_separable_data():
    result = trainer(mlp(), config()).fit(separable(300, 1), separable(200, 2))

    assert result.history[-1]["val_auroc"] > 0.97


def test_trained_model_ranks_held_out_rows_well():
    model = mlp()
    trainer(model, config()).fit(separable(300, 1), separable(200, 2))

    x, y = separable(500, 3).tensors
    with torch.no_grad():
        scores = model(x).reshape(-1).numpy()
    assert roc_auc_score(y.numpy(), scores) > 0.97


def test_multiclass_task_learns_three_classes():
    task = MulticlassTask(["a", "b", "c"])
    model = mlp(out=3)
    result = trainer(model, config(), task=task).fit(three_classes(300, 1), three_classes(200, 2))

    assert result.history[-1]["val_auroc"] > 0.95
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]


# ------------------------------------------------------------------ optimizers and schedules
@pytest.mark.parametrize(
    "name, expected", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_each_optimizer_is_the_one_asked_for_and_trains(name, expected):
    run = trainer(mlp(), config(optimizer=name))
    result = run.fit(separable(300, 1), separable(200, 2))

    assert type(run.optimizer) is expected
    assert result.history[-1]["train_loss"] < 0.6 * result.history[0]["train_loss"]
    assert result.history[-1]["val_auroc"] > 0.95


def test_sgd_uses_the_configured_momentum():
    run = trainer(mlp(), config(optimizer="sgd", momentum=0.5))

    assert run.optimizer.param_groups[0]["momentum"] == 0.5


def test_weight_decay_reaches_the_optimizer():
    run = trainer(mlp(), config(optimizer="adamw"), weight_decay=0.03)

    assert run.optimizer.param_groups[0]["weight_decay"] == 0.03


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "warmup_cosine"])
def test_each_schedule_trains(schedule):
    result = trainer(mlp(), config(schedule=schedule, warmup_epochs=2)).fit(separable(300, 1), separable(200, 2))

    assert result.history[-1]["train_loss"] < 0.6 * result.history[0]["train_loss"]


def test_constant_schedule_keeps_the_learning_rate():
    run = trainer(mlp(), config(schedule="constant"))
    result = run.fit(separable(300, 1))

    assert [row["lr"] for row in result.history] == [1e-2] * 10
    assert run.optimizer.param_groups[0]["lr"] == 1e-2


def test_cosine_schedule_decays_the_learning_rate_to_zero():
    run = trainer(mlp(), config(schedule="cosine"))
    seen = record_learning_rates(run)
    run.fit(separable(320, 1))  # 10 steps an epoch, 100 in all

    assert seen[0] == pytest.approx(1e-2)
    assert seen[50] == pytest.approx(0.5e-2)  # half-way through training: half the peak
    assert all(later < earlier for earlier, later in zip(seen, seen[1:]))
    assert seen[-1] < 1e-5
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_logged_learning_rate_follows_the_cosine_schedule():
    result = trainer(mlp(), config(schedule="cosine")).fit(separable(320, 1))

    lrs = [row["lr"] for row in result.history]
    assert all(later < earlier for earlier, later in zip(lrs, lrs[1:]))
    assert lrs[-1] < 0.05 * 1e-2


def test_step_schedule_divides_the_learning_rate_by_ten_at_half_and_three_quarters():
    # 20 epochs: epochs 0-9 at the full rate, 10-14 at a tenth, 15-19 at a hundredth.
    run = trainer(mlp(), config(schedule="step", epochs=20))
    seen = record_learning_rates(run)
    run.fit(separable(320, 1))  # 10 steps an epoch

    per_epoch = [sorted(set(seen[e * 10 : (e + 1) * 10])) for e in range(20)]
    assert per_epoch[:10] == [[pytest.approx(1e-2)]] * 10
    assert per_epoch[10:15] == [[pytest.approx(1e-3)]] * 5
    assert per_epoch[15:] == [[pytest.approx(1e-4)]] * 5


def test_warmup_cosine_rises_to_the_peak_then_decays_to_zero():
    run = trainer(mlp(), config(schedule="warmup_cosine", warmup_epochs=2, epochs=10))
    seen = record_learning_rates(run)
    run.fit(separable(320, 1))  # 10 steps an epoch, 20 warmup steps

    warmup, rest = seen[:20], seen[20:]
    assert all(later > earlier for earlier, later in zip(warmup, warmup[1:]))
    assert warmup[0] < 0.1 * 1e-2
    assert rest[0] == pytest.approx(1e-2)
    assert all(later < earlier for earlier, later in zip(rest, rest[1:]))
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_logged_learning_rate_is_the_one_the_epoch_trained_with():
    # 8 epochs of 10 steps, step schedule: epochs 0-3 at 1e-2, 4-5 at 1e-3, 6-7 at 1e-4.
    run = trainer(mlp(), config(schedule="step", epochs=8))
    seen = record_learning_rates(run)
    result = run.fit(separable(320, 1))

    used = [seen[epoch * 10] for epoch in range(8)]
    assert [row["lr"] for row in result.history] == pytest.approx(used)


def test_gradient_clipping_bounds_the_update():
    # One full-batch SGD step without momentum moves the weights by lr * (clipped gradient).
    model = mlp()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = config(epochs=1, optimizer="sgd", momentum=0.0, grad_clip=1e-3)
    trainer(model, cfg, lr=1.0, batch_size=300).fit(separable(300, 1))

    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_model_that_trains_its_members_separately_learns():
    # TabM returns (batch, k, 1) in training mode; each member gets its own loss.
    torch.manual_seed(0)
    model = create_model("tabm", in_features=FEATURES, out_features=1, k=4, width=16, n_blocks=1, dropout=0.0)
    result = trainer(model, config()).fit(separable(300, 1), separable(200, 2))

    model.train()
    x, y = separable(500, 3).tensors
    with torch.no_grad():
        members = model(x)[:, :, 0]
    assert result.history[-1]["val_auroc"] > 0.97
    assert all(roc_auc_score(y.numpy(), members[:, k].numpy()) > 0.95 for k in range(4))


def test_balanced_sampler_refuses_a_multilabel_target():
    from medtorch.tasks import MultilabelTask

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(100, FEATURES, generator=g), (torch.rand(100, 3, generator=g) > 0.5).float())
    run = trainer(mlp(out=3), config(sampler="balanced"), task=MultilabelTask(["a", "b", "c"]))

    with pytest.raises(MedtorchError, match="single-label"):
        run.fit(data)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_is_refused():
    with pytest.raises(MedtorchError, match="no GPU"):
        trainer(mlp(), config(device="cuda"))


# ------------------------------------------------------------------ early stopping
def overfitting_run(tmp_path, **overrides):
    """A wide MLP on noisy labels: validation loss falls for four epochs, then rises."""
    model = mlp(features=20, hidden=(64,))
    cfg = config(epochs=60, patience=2, **overrides)
    run = trainer(model, cfg, lr=3e-3, batch_size=16, checkpoint_path=tmp_path / "checkpoint.safetensors")
    val = noisy(300, 20)
    result = run.fit(noisy(200, 10), val)
    return model, val, result


def test_early_stopping_stops_two_epochs_after_the_best(tmp_path):
    _, _, result = overfitting_run(tmp_path)

    assert result.stopped_early
    assert result.best_epoch >= 1  # the scenario: the loss fell before it rose
    assert len(result.history) == result.best_epoch + 1 + 2 < 60


def test_early_stopping_best_epoch_has_the_lowest_validation_loss(tmp_path):
    _, _, result = overfitting_run(tmp_path)

    val_losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch == int(np.argmin(val_losses))
    assert val_losses[-1] > val_losses[result.best_epoch]


def test_early_stopping_leaves_the_best_epochs_weights_in_the_model(tmp_path):
    model, val, result = overfitting_run(tmp_path)

    x, y = val.tensors
    with torch.no_grad():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).reshape(-1), y).item()
    assert loss == pytest.approx(result.history[result.best_epoch]["val_loss"], abs=1e-6)


def test_early_stopping_model_equals_the_checkpoints_best_tensors(tmp_path):
    model, _, _ = overfitting_run(tmp_path)

    tensors = load_file(tmp_path / "checkpoint.safetensors")
    best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
    last = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    assert same_weights(weights(model), best)
    assert not same_weights(weights(model), last)


def test_early_stopping_on_the_primary_metric_keeps_the_best_auroc_epoch(tmp_path):
    _, _, result = overfitting_run(tmp_path, monitor="primary")

    aurocs = [row["val_auroc"] for row in result.history]
    assert result.best_epoch == int(np.argmax(aurocs))
    assert len(result.history) == result.best_epoch + 1 + 2


def test_patience_zero_disables_early_stopping(tmp_path):
    model = mlp(features=20, hidden=(64,))
    run = trainer(model, config(epochs=12, patience=0), lr=3e-3, batch_size=16)
    result = run.fit(noisy(200, 10), noisy(300, 20))

    assert len(result.history) == 12
    assert not result.stopped_early


# ------------------------------------------------------------------ imbalance
def test_balanced_class_weights_raise_sensitivity_on_rare_positives():
    train, test = imbalanced(600, 1), imbalanced(4000, 2)
    task = binary_task()
    plain, weighted = mlp(), mlp()
    trainer(plain, config()).fit(train)
    class_weights = task.balanced_class_weights(train.tensors[1].numpy())
    trainer(weighted, config(), task=task).fit(train, class_weights=class_weights)

    assert sensitivity(weighted, test) > sensitivity(plain, test) + 0.3


def test_sqrt_class_weights_sit_between_no_weights_and_balanced_weights():
    train, test = imbalanced(600, 1), imbalanced(4000, 2)
    found = {}
    for weights in ("none", "sqrt", "balanced"):
        model = mlp()
        trainer(model, config(class_weights=weights), task=binary_task()).fit(train)
        found[weights] = sensitivity(model, test)
    assert found["none"] + 0.1 < found["sqrt"] < found["balanced"] - 0.05


def test_balanced_sampler_raises_sensitivity_on_rare_positives():
    train, test = imbalanced(600, 1), imbalanced(4000, 2)
    plain, resampled = mlp(), mlp()
    trainer(plain, config()).fit(train)
    trainer(resampled, config(sampler="balanced")).fit(train)

    assert sensitivity(resampled, test) > sensitivity(plain, test) + 0.3


def test_balanced_sampler_draws_classes_about_equally():
    run = trainer(mlp(), config(sampler="balanced"))
    train = imbalanced(2000, 1)

    drawn = torch.cat([y for _, y, _ in run._batches(train, epoch=0)])
    assert len(drawn) == 2000
    assert drawn.mean().item() == pytest.approx(0.5, abs=0.05)


# ------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_weights():
    first, second = mlp(), mlp()
    trainer(first, config(seed=7)).fit(separable(300, 1), separable(200, 2))
    trainer(second, config(seed=7)).fit(separable(300, 1), separable(200, 2))

    assert same_weights(weights(first), weights(second))


def test_different_seed_gives_different_weights():
    first, second = mlp(), mlp()
    trainer(first, config(seed=7)).fit(separable(300, 1))
    trainer(second, config(seed=8)).fit(separable(300, 1))

    assert not same_weights(weights(first), weights(second))


def test_dropout_masks_repeat_with_the_same_seed():
    def dropout_model():
        torch.manual_seed(0)
        return create_model("mlp", in_features=FEATURES, out_features=1, hidden=(16,), dropout=0.5)

    first, second = dropout_model(), dropout_model()
    torch.manual_seed(123)  # the global RNG state before fit must not matter
    trainer(first, config(seed=3)).fit(separable(300, 1))
    torch.manual_seed(456)
    trainer(second, config(seed=3)).fit(separable(300, 1))

    assert same_weights(weights(first), weights(second))


# ------------------------------------------------------------------ checkpoints and log
def test_a_checkpoint_is_written_after_every_epoch(tmp_path, monkeypatch):
    real_save = ckpt.save_checkpoint
    epochs_on_disk = []

    def save_and_read_back(path, tensors, state):
        real_save(path, tensors, state)
        epochs_on_disk.append(ckpt.load_checkpoint(path)[1]["progress"]["epoch"])

    monkeypatch.setattr(ckpt, "save_checkpoint", save_and_read_back)
    trainer(mlp(), config(epochs=6), checkpoint_path=tmp_path / "checkpoint.safetensors").fit(separable(300, 1), separable(200, 2))

    assert epochs_on_disk == [0, 1, 2, 3, 4, 5]


def test_checkpoint_holds_the_last_weights_and_the_optimizer_state(tmp_path):
    model = mlp()
    path = tmp_path / "checkpoint.safetensors"
    trainer(model, config(epochs=3, optimizer="adam"), checkpoint_path=path).fit(separable(300, 1))

    tensors, state = ckpt.load_checkpoint(path)
    last = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    assert last.keys() == model.state_dict().keys()
    assert any(k.startswith("optimizer.") and k.endswith(".exp_avg") for k in tensors)
    assert state["progress"]["epoch"] == 2
    assert state["progress"]["finished"] is True


def test_train_log_has_one_row_per_epoch_with_the_expected_columns(tmp_path):
    log = tmp_path / "train_log.csv"
    trainer(mlp(), config(epochs=7), checkpoint_path=tmp_path / "c.safetensors", log_path=log).fit(
        separable(300, 1), separable(200, 2)
    )

    rows = read_log(log)
    assert list(rows[0]) == ["epoch", "train_loss", "lr", "val_loss", "val_auroc", "seconds"]
    assert [int(row["epoch"]) for row in rows] == list(range(7))
    assert all(math.isfinite(float(row[column])) for row in rows for column in rows[0])


def test_train_log_matches_the_returned_history(tmp_path):
    log = tmp_path / "train_log.csv"
    result = trainer(mlp(), config(epochs=4), checkpoint_path=tmp_path / "c.safetensors", log_path=log).fit(
        separable(300, 1), separable(200, 2)
    )

    rows = read_log(log)
    assert [float(row["val_loss"]) for row in rows] == [row["val_loss"] for row in result.history]


def test_train_log_without_validation_has_no_validation_columns(tmp_path):
    log = tmp_path / "train_log.csv"
    trainer(mlp(), config(epochs=2), checkpoint_path=tmp_path / "c.safetensors", log_path=log).fit(separable(300, 1))

    assert list(read_log(log)[0]) == ["epoch", "train_loss", "lr", "seconds"]


# ------------------------------------------------------------------ resume
def test_resuming_a_finished_run_does_no_more_epochs(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    first = mlp()
    trainer(first, config(epochs=5), checkpoint_path=path).fit(separable(300, 1), separable(200, 2))
    written = path.read_bytes()

    second = mlp(seed=99)
    result = trainer(second, config(epochs=5), checkpoint_path=path).fit(separable(300, 1), separable(200, 2))

    assert len(result.history) == 5
    assert result.resumed_from_epoch == 5
    assert path.read_bytes() == written
    assert same_weights(weights(first), weights(second))


def test_resuming_an_early_stopped_run_does_no_more_epochs(tmp_path):
    _, _, first = overfitting_run(tmp_path)
    _, _, again = overfitting_run(tmp_path)

    assert len(again.history) == len(first.history)
    assert again.best_epoch == first.best_epoch
    assert again.stopped_early


@pytest.mark.parametrize("optimizer, schedule", [("adamw", "cosine"), ("sgd", "warmup_cosine"), ("adam", "step")])
def test_interrupted_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch, optimizer, schedule):
    def run(folder, model):
        cfg = config(epochs=8, optimizer=optimizer, schedule=schedule, warmup_epochs=2)
        return trainer(model, cfg, checkpoint_path=folder / "checkpoint.safetensors", log_path=folder / "log.csv").fit(
            separable(300, 1), separable(200, 2)
        )

    uninterrupted = mlp()
    run(tmp_path / "a", uninterrupted)

    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, last_epoch=3)
        with pytest.raises(Interrupted):
            run(tmp_path / "b", mlp())
    resumed = mlp(seed=42)  # the checkpoint, not the fresh initialisation, must decide
    result = run(tmp_path / "b", resumed)

    assert result.resumed_from_epoch == 4
    assert same_weights(weights(uninterrupted), weights(resumed))
    assert [int(row["epoch"]) for row in read_log(tmp_path / "b" / "log.csv")] == list(range(8))


def test_checkpoint_of_a_run_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    trainer(mlp(), config(epochs=2), checkpoint_path=path, fingerprint="aaaa").fit(separable(300, 1))

    with pytest.raises(MedtorchError, match="different settings"):
        trainer(mlp(), config(epochs=4), checkpoint_path=path, fingerprint="bbbb").fit(separable(300, 1))


def test_refused_checkpoint_is_left_untouched(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    trainer(mlp(), config(epochs=2), checkpoint_path=path, fingerprint="aaaa").fit(separable(300, 1))
    written = path.read_bytes()

    with pytest.raises(MedtorchError):
        trainer(mlp(), config(epochs=4), checkpoint_path=path, fingerprint="bbbb").fit(separable(300, 1))
    assert path.read_bytes() == written


# ------------------------------------------------------------------ batches
def test_every_row_is_seen_once_an_epoch():
    run = trainer(mlp(), config(), batch_size=64)
    train = TensorDataset(torch.arange(300, dtype=torch.float32).reshape(-1, 1).repeat(1, FEATURES), torch.zeros(300))

    seen = torch.cat([x[:, 0] for x, _, _ in run._batches(train, epoch=0)])
    assert sorted(seen.long().tolist()) == list(range(300))


def test_shuffling_differs_between_epochs_and_repeats_for_an_epoch():
    run = trainer(mlp(), config(), batch_size=300)
    train = TensorDataset(torch.arange(300, dtype=torch.float32).reshape(-1, 1), torch.zeros(300))

    def order(epoch):
        return next(iter(run._batches(train, epoch)))[0].reshape(-1).tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)


class BatchedRows(torch.utils.data.Dataset):
    """A dataset that also builds whole batches, the way the image dataset does; counts both paths."""

    def __init__(self, data: TensorDataset):
        self.data, self.batches, self.items = data, 0, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        self.items += 1
        return self.data[index]

    def batch(self, indices: torch.Tensor):
        self.batches += 1
        return self.data.tensors[0][indices], self.data.tensors[1][indices]


def test_a_dataset_that_builds_batches_is_asked_for_whole_batches():
    train = BatchedRows(separable(300, 0))
    trainer(mlp(), config(epochs=2), batch_size=100).fit(train)
    assert train.batches == 6 and train.items == 0


def test_batched_and_per_item_datasets_train_to_the_same_weights():
    per_item, batched = mlp(), mlp()
    trainer(per_item, config(epochs=3)).fit(separable(300, 0))
    trainer(batched, config(epochs=3)).fit(BatchedRows(separable(300, 0)))
    assert same_weights(weights(per_item), weights(batched))


# ------------------------------------------------------------------ precision
def test_mixed_precision_true_trains_in_bf16_on_cpu_and_still_learns(monkeypatch):
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: True)  # bf16 runs everywhere, natively or not
    model, seen = mlp(), []
    model.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    trainer(model, config(epochs=10, mixed_precision=True)).fit(separable(400, 0))
    assert seen[0] == torch.bfloat16
    valid = separable(400, 1)
    with torch.no_grad():
        scores = model(valid.tensors[0]).reshape(-1).float()
    assert roc_auc_score(valid.tensors[1].numpy(), scores.numpy()) > 0.95


def test_mixed_precision_true_stays_float32_with_a_warning_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    trainer_module._warn_bf16_fallback.cache_clear()
    model, seen = mlp(), []
    model.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        result = trainer(model, config(epochs=1, mixed_precision=True)).fit(separable(100, 0))
    assert seen[0] == torch.float32 and result.precision == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer(mlp(), config(epochs=1, mixed_precision=True))  # said once per process, not once per member or fold


def test_native_bf16_is_read_from_the_cpu_flags_not_from_onednn(monkeypatch, tmp_path):
    cpuinfo = {"avx2 avx512f avx512bw avx512vl avx512dq": False, "avx2 avx512f avx512_bf16": True, "fp asimd bf16 i8mm": True}
    for flags, native in cpuinfo.items():
        (tmp_path / "cpuinfo").write_text(f"processor : 0\nflags : {flags}\n")
        monkeypatch.setattr(trainer_module, "Path", lambda path: tmp_path / "cpuinfo")
        trainer_module.cpu_has_native_bf16.cache_clear()
        assert trainer_module.cpu_has_native_bf16() is native, flags
    trainer_module.cpu_has_native_bf16.cache_clear()


def test_mixed_precision_auto_keeps_float32_on_cpu():
    model, seen = mlp(), []
    model.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    trainer(model, config(epochs=1)).fit(separable(100, 0))
    assert seen[0] == torch.float32


def test_the_trainer_refuses_auto_class_weights_which_only_the_pipeline_chooses():
    with pytest.raises(MedtorchError, match="auto"):
        trainer(mlp(), config(class_weights="auto")).fit(separable(100, 0))
