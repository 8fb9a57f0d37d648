"""The trainer: one loop for every modality.

Optimizers (Adam, AdamW, SGD), LR schedules, class weights or balanced sampling, early
stopping on a validation metric, a checkpoint every epoch, exact resume after a kill,
deterministic seeding, a per-epoch CSV log, GPU with mixed precision when present, and
DDP under ``torchrun``.

>>> result = Trainer(model, task, TrainConfig(epochs=50), checkpoint_path=run / "checkpoint.safetensors").fit(train, val)

Exact resume: the shuffling order and dropout randomness of epoch ``e`` are seeded from
``(seed, e)`` alone, and a checkpoint holds everything else (weights, optimizer, schedule,
early-stopping state), so a run resumed from epoch ``e`` repeats the uninterrupted run bit
for bit.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from medtorch.config import TrainConfig
from medtorch.errors import ConfigError, MedtorchError
from medtorch.inference import batch_of, model_outputs
from medtorch.tasks import Task
from medtorch.training import checkpoint as ckpt
from medtorch.training.distributed import DistributedContext, context, resolve_device


def auto_batch_size(n_train: int) -> int:
    """About 20 steps an epoch on small tables, capped at 256: a power of two in [16, 256]."""
    return int(2 ** np.clip(round(math.log2(max(n_train, 1) / 20)), 4, 8))


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    resumed_from_epoch: int | None = None
    seconds: float = 0.0
    precision: str = "fp32"  # "bf16" when autocast ran


@dataclass
class _Progress:
    """Early-stopping state, saved in every checkpoint."""

    epoch: int = -1
    best_value: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    finished: bool = False


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # /proc/cpuinfo flags: x86 AVX512-BF16 and AMX, Arm's BF16


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively, by its ``/proc/cpuinfo`` flags (``NATIVE_BF16_FLAGS``).

    oneDNN's own check says yes to any AVX512 CPU, which only emulates bf16; without
    ``/proc/cpuinfo`` (macOS, Windows) the answer is no, the side that cannot slow training down.
    """
    cpuinfo = Path("/proc/cpuinfo")
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return not flags.isdisjoint(NATIVE_BF16_FLAGS)


def use_bf16_autocast(mixed_precision: bool | str, device: torch.device) -> bool:
    """bf16 autocast for ``train.mixed_precision``: ``"auto"`` on a GPU only; ``True`` also on a CPU,
    unless the CPU lacks native bf16 (e.g. AVX2 only): there autocast is emulated and several times
    slower than fp32 (7x for ``cnn_rr`` on an AVX2 EPYC), so training stays fp32, with a warning once.

    >>> use_bf16_autocast("auto", torch.device("cpu"))
    False
    """
    if mixed_precision == "auto":
        return device.type == "cuda"
    if mixed_precision is not True:
        return False
    if device.type == "cpu" and not cpu_has_native_bf16():
        _warn_bf16_fallback()
        return False
    return True


@functools.cache  # said once per process, not once per ensemble member or fold (metrics' catch_warnings resets Python's own once-rule)
def _warn_bf16_fallback() -> None:
    warnings.warn("train.mixed_precision: this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 is slower than fp32; training in fp32", RuntimeWarning, stacklevel=4)


class Trainer:
    """Fits ``model`` to a task; see the module docstring for what it guarantees."""

    def __init__(
        self,
        model: torch.nn.Module,
        task: Task,
        config: TrainConfig,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        checkpoint_path: str | Path | None = None,
        log_path: str | Path | None = None,
        progress: bool = True,
        fingerprint: str = "",
    ):
        self.config = config
        self.task = task
        self.batch_size = batch_size
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.log_path = Path(log_path) if log_path else None
        self.show_progress = progress
        self.fingerprint = fingerprint
        self.device = torch.device(resolve_device(config.device))
        self.dist: DistributedContext = context(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.module = model.to(self.device)
        self.model = self.module  # wrapped in DistributedDataParallel while fit runs under torchrun
        # a model that trains k ensemble members at once (TabM) says so; see _per_member
        self.trains_members = bool(getattr(self.module, "trains_members", False))
        self._weights_of: Dataset | None = None  # the dataset whose balanced-sampling weights are cached
        self._weights: torch.Tensor | None = None
        self.optimizer = _make_optimizer(config, self.module.parameters(), lr, weight_decay)
        self.autocast = use_bf16_autocast(config.mixed_precision, self.device)

    # ------------------------------------------------------------------ public
    def fit(self, train: Dataset, val: Dataset | None = None, class_weights: np.ndarray | None = None) -> TrainResult:
        """Train until ``epochs`` or early stopping; leaves the best epoch's weights in the model."""
        start_time = time.perf_counter()
        if self.config.class_weights == "auto":
            raise ConfigError("class_weights 'auto' is chosen by the pipeline (medtorch.train); give the trainer none, sqrt or balanced")
        if class_weights is None and self.config.class_weights != "none":
            class_weights = self.task.class_weights(_targets(train).numpy(), self.config.class_weights)
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32, device=self.device)
        loss_fn = self.task.loss(weights).to(self.device)
        steps_per_epoch = self._steps_per_epoch(len(train))
        scheduler = _make_scheduler(self.config, self.optimizer, steps_per_epoch)
        state, best_weights = _Progress(), None
        resumed = None
        if self.checkpoint_path and self.checkpoint_path.exists():
            state, best_weights = self._restore(scheduler)
            resumed = state.epoch + 1
        seconds_before = state.history[-1]["seconds"] if state.history else 0.0
        val_targets = None if val is None else _targets(val)  # once: a dataset may load every item to give them
        with self._parallel(), _ProgressBar(self.show_progress and self.dist.is_main, self.config.epochs, resumed or 0) as bar:
            for epoch in range(state.epoch + 1, self.config.epochs):
                if state.finished:
                    break
                lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch starts with
                row = {"epoch": epoch, "train_loss": self._train_epoch(train, epoch, loss_fn, scheduler, bar), "lr": lr}
                if val is not None:
                    row.update(self._validate(val, val_targets, loss_fn))
                row["seconds"] = round(seconds_before + time.perf_counter() - start_time, 3)
                state.history.append(row)
                state.epoch = epoch
                if self._improved(row, state):
                    state.best_value, state.best_epoch, state.bad_epochs = self._monitored(row), epoch, 0
                    best_weights = copy.deepcopy(self.module.state_dict())
                else:
                    state.bad_epochs += 1
                patience = self.config.patience
                state.finished = epoch + 1 == self.config.epochs or (patience > 0 and state.bad_epochs >= patience)
                self._save(state, scheduler, best_weights)
                bar.advance(row, self.task.primary_metric)
        if best_weights is not None:
            self.module.load_state_dict(best_weights)
        return TrainResult(
            history=state.history,
            best_epoch=state.best_epoch,
            stopped_early=state.epoch + 1 < self.config.epochs,
            resumed_from_epoch=resumed,
            seconds=time.perf_counter() - start_time,
            precision="bf16" if self.autocast else "fp32",
        )

    @contextlib.contextmanager
    def _parallel(self) -> Iterator[None]:
        """Under torchrun, the model wrapped in DistributedDataParallel for the duration of ``fit`` only:
        a DDP kept afterwards holds the process group past destroy_process_group, and the
        interpreter's teardown then destroys gloo's threads unjoined (SIGABRT at exit)."""
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        try:
            yield
        finally:
            self.model = self.module

    # ----------------------------------------------------------------- epochs
    def _train_epoch(self, train: Dataset, epoch: int, loss_fn: torch.nn.Module, scheduler: Any, bar: _ProgressBar) -> float:
        """One pass over the training set; returns the mean training loss over all rows (all processes)."""
        self._seed_epoch(epoch)
        self.model.train()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, row count
        bar.start_epoch(self._steps_per_epoch(len(train)))
        precision = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        for x, y, share in self._batches(train, epoch):
            if x.device != self.device:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with precision:
                output = self.model(x).float()
                loss = loss_fn(*_per_member(output, y) if self.trains_members else (output, y))
            # DDP averages gradients over processes; weighting by each share keeps uneven batches exact
            (loss * share if share != 1.0 else loss).backward()
            if self.config.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
            self.optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total[0] += loss.detach() * len(y)
            total[1] += len(y)
            bar.batch_done()
        if self.dist.enabled:
            torch.distributed.all_reduce(total)
        return (total[0] / total[1].clamp(min=1)).item()

    def _validate(self, val: Dataset, targets: torch.Tensor, loss_fn: torch.nn.Module) -> dict[str, float]:
        from medtorch.evaluation.metrics import primary_metric

        logits = model_outputs(self.module, val, batch_size=1024, device=self.device)
        with torch.no_grad():
            loss = loss_fn(logits.to(self.device), targets.to(self.device)).item()
        scores = self.task.scores(logits).numpy()
        return {"val_loss": loss, f"val_{self.task.primary_metric}": primary_metric(self.task, targets.numpy(), scores)}

    def _seed_epoch(self, epoch: int) -> None:
        torch.manual_seed(self.config.seed * 100_003 + epoch)

    def _batches(self, train: Dataset, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """This process's share of each global batch, in an order fixed by (seed, epoch), with the share's
        loss weight: ``world_size * len(share) / len(batch)`` (1 when training in one process)."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        n = len(train)
        if self.config.sampler == "balanced":
            order = torch.multinomial(self._sample_weights(train), n, replacement=True, generator=generator)
        else:
            order = torch.randperm(n, generator=generator)
        world, rank = self.dist.world_size, self.dist.rank
        # every process needs a share of a batch, or DDP would wait forever: drop a smaller tail
        batches = [batch for batch in order.split(self.batch_size) if len(batch) >= world]
        shares = [batch[rank::world] for batch in batches]
        weights = [world * len(share) / len(batch) for share, batch in zip(shares, batches)]
        if self.config.num_workers == 0 or isinstance(train, TensorDataset):
            pairs = (batch_of(train, share) for share in shares)
        else:
            batch_sampler = [share.tolist() for share in shares]
            pairs = iter(DataLoader(train, batch_sampler=batch_sampler, num_workers=self.config.num_workers))
        return ((x, y, weight) for (x, y), weight in zip(pairs, weights))

    def _sample_weights(self, train: Dataset) -> torch.Tensor:
        """Balanced-sampling weights of ``train``, computed once rather than every epoch."""
        if self._weights_of is not train:
            self._weights_of, self._weights = train, _balanced_sample_weights(train)
        return self._weights

    def _steps_per_epoch(self, n: int) -> int:
        full, rest = divmod(n, self.batch_size)
        return full + (rest >= self.dist.world_size)

    # ------------------------------------------------------- early stopping
    def _monitored(self, row: dict[str, float]) -> float:
        if "val_loss" not in row:
            return row["train_loss"]
        return row["val_loss"] if self.config.monitor == "loss" else row[f"val_{self.task.primary_metric}"]

    def _improved(self, row: dict[str, float], state: _Progress) -> bool:
        value = self._monitored(row)
        if value is None or np.isnan(value):
            return state.best_value is None
        if state.best_value is None:
            return True
        lower_is_better = self.config.monitor == "loss" or self.task.primary_metric in ("rmse", "mae")
        return value < state.best_value if lower_is_better else value > state.best_value

    # ----------------------------------------------------------- checkpoints
    def _save(self, state: _Progress, scheduler: Any, best_weights: dict[str, torch.Tensor] | None) -> None:
        if not self.checkpoint_path or not self.dist.is_main:
            return
        optimizer_tensors, optimizer_json = ckpt.optimizer_to_flat(self.optimizer.state_dict())
        tensors = {
            **ckpt.prefixed("model", self.module.state_dict()),
            **ckpt.prefixed("best", best_weights or {}),
            **ckpt.prefixed("optimizer", optimizer_tensors),
        }
        scheduler_state = {} if scheduler is None else {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
        payload = {
            "progress": state.__dict__,
            "optimizer": optimizer_json,
            "scheduler": scheduler_state,
            "fingerprint": self.fingerprint,
        }
        ckpt.save_checkpoint(self.checkpoint_path, tensors, payload)
        if self.log_path:
            _write_log(self.log_path, state.history)

    def _restore(self, scheduler: Any) -> tuple[_Progress, dict[str, torch.Tensor] | None]:
        tensors, payload = ckpt.load_checkpoint(self.checkpoint_path)
        if payload.get("fingerprint") != self.fingerprint:
            raise MedtorchError(f"{self.checkpoint_path} belongs to a run with different settings; use a new output folder")
        self.module.load_state_dict(ckpt.unprefixed("model", tensors))
        optimizer_tensors = {k: v.to(self.device) for k, v in ckpt.unprefixed("optimizer", tensors).items()}
        self.optimizer.load_state_dict(ckpt.optimizer_from_flat(optimizer_tensors, payload["optimizer"]))
        if scheduler is not None:
            scheduler.load_state_dict({**payload["scheduler"], "lr_lambdas": [None] * len(self.optimizer.param_groups)})
        best = ckpt.unprefixed("best", tensors) or None
        return _Progress(**payload["progress"]), best


# ------------------------------------------------------------------ helpers
def _make_optimizer(config: TrainConfig, parameters: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, weight_decay=weight_decay)
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=lr, weight_decay=weight_decay)


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    """A per-step LambdaLR (its only state is the step count, so it resumes exactly); ``None`` for a constant rate.

    Warmup lasts ``warmup_epochs``, at most half the run.
    """
    if config.schedule == "constant":
        return None
    total = max(config.epochs * steps_per_epoch, 1)
    warmup = min(config.warmup_epochs * steps_per_epoch, total // 2) if config.schedule == "warmup_cosine" else 0

    def factor(step: int) -> float:
        if config.schedule == "step":
            return 0.1 ** sum(step >= total * m for m in (0.5, 0.75))
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _per_member(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output ``(batch, k, out)`` and target with the ``k`` ensemble members folded into the batch,
    so each member gets its own loss on the same targets."""
    return output.flatten(0, 1), target.repeat_interleave(output.shape[1], dim=0)


def _targets(dataset: Dataset) -> torch.Tensor:
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1]
    if hasattr(dataset, "targets"):
        return torch.as_tensor(np.asarray(dataset.targets))
    return torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])


def _balanced_sample_weights(dataset: Dataset) -> torch.Tensor:
    labels = _targets(dataset)
    if labels.ndim > 1:
        raise MedtorchError("balanced sampling needs a single-label target; use class_weights for multi-label tasks")
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse].double()


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    """Rewrite the per-epoch CSV log from the checkpointed history (no duplicate rows after a resume)."""
    if not history:
        return
    columns = list(dict.fromkeys(key for row in history for key in row))
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    temporary.replace(path)


class _ProgressBar:
    """A rich progress bar over epochs and batches (silent when disabled)."""

    def __init__(self, enabled: bool, epochs: int, completed: int):
        self.enabled, self.epochs, self.completed = enabled, epochs, completed

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
            )
            self.progress.start()
            self.epoch_task = self.progress.add_task("training", total=self.epochs, completed=self.completed)
            self.batch_task = self.progress.add_task("  batches", total=1)
        return self

    def start_epoch(self, n_batches: int) -> None:
        if self.enabled:
            self.progress.reset(self.batch_task, total=n_batches)

    def batch_done(self) -> None:
        if self.enabled:
            self.progress.advance(self.batch_task)

    def advance(self, row: dict[str, float], metric: str) -> None:
        if self.enabled:
            shown = f"epoch {row['epoch'] + 1} loss {row['train_loss']:.4f}"
            if "val_loss" in row:
                shown += f" val_loss {row['val_loss']:.4f} val_{metric} {row.get('val_' + metric, float('nan')):.4f}"
            self.progress.update(self.epoch_task, advance=1, description=shown)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.stop()

