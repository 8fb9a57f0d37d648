"""Overhead of medtorch's Trainer over a plain PyTorch loop with the same model, data and batch.

The spec: "Its overhead over a plain PyTorch loop with the same model and batch must be at most
5%". This script times, per epoch, on the same in-memory table:

  plain              a plain loop: randperm, index the tensors, zero_grad, forward, loss, backward, step
  trainer            Trainer.fit with no validation set, no checkpoint and no log: the training loop alone
  plain+val+ckpt     the plain loop plus, each epoch, a validation pass (loss and AUROC) and a
                     torch.save of the model and optimizer state: the same work as the next one
  trainer+val+ckpt   Trainer.fit as the pipeline runs it: validation, checkpoint and CSV log every epoch

The 5% limit applies to "trainer" against "plain": the training loop. Validation and
checkpoints are work the plain loop does not do; the second table shows what they cost, in the
trainer and in a plain loop doing the same.

Fairness: every variant starts from the same initial weights and uses the same loss (the task's),
optimizer (AdamW, same lr and weight decay), batch size and number of torch threads. Variants are
interleaved (their order rotates each round) so drift in machine load hits all alike. A timed
run covers a few epochs, Trainer construction included; the time per epoch is reported. The
overhead is the median over rounds of the per-round ratio trainer/plain (robust to load that
changes between rounds), with the ratio of the fastest runs beside it (the least disturbed).

A third table times, with timeit, each operation the trainer adds to a training step, as a share
of a plain step: an account of the overhead that machine load does not blur.

    .venv/bin/python benchmarks/trainer_overhead.py                    # prints markdown tables
    .venv/bin/python benchmarks/trainer_overhead.py --profile mlp      # cProfile of both loops
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
import timeit
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from medtorch import create_model
from medtorch.config import TrainConfig
from medtorch.tasks import BinaryTask
from medtorch.training import Trainer

FEATURES = 30
LR, WEIGHT_DECAY = 1e-3, 1e-4


def make_data(rows: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, FEATURES, generator=g)
    w = torch.randn(FEATURES, generator=g)
    y = ((x @ w) / FEATURES**0.5 + 0.5 * torch.randn(rows, generator=g) > 0).float()
    return TensorDataset(x, y)


def task() -> BinaryTask:
    return BinaryTask([0.0, 1.0], 1.0)


# ------------------------------------------------------------------ the contenders
def plain_loop(model, train: TensorDataset, epochs: int, batch: int, val=None, checkpoint: Path | None = None) -> None:
    """What a PyTorch user writes by hand."""
    x_all, y_all = train.tensors
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loss_fn = task().loss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            x, y = x_all[index], y_all[index]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
        if val is not None:
            from sklearn.metrics import roc_auc_score

            model.eval()
            with torch.inference_mode():
                logits = torch.cat([model(chunk) for chunk in val.tensors[0].split(1024)])
                loss_fn(logits, val.tensors[1]).item()
            roc_auc_score(val.tensors[1].numpy(), logits.reshape(-1).sigmoid().numpy())
        if checkpoint is not None:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, checkpoint)


def trainer_fit(model, train: TensorDataset, epochs: int, batch: int, val=None, folder: Path | None = None) -> None:
    config = TrainConfig(epochs=epochs, patience=0, device="cpu", optimizer="adamw", schedule="constant")
    Trainer(
        model,
        task(),
        config,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        batch_size=batch,
        checkpoint_path=folder / "checkpoint.safetensors" if folder else None,
        log_path=folder / "train_log.csv" if folder else None,
        progress=False,
    ).fit(train, val)


# ------------------------------------------------------------------ end-to-end timing
def measure(name: str, rows: int, batch: int, epochs: int, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds per epoch of each variant, one timed run per variant per round."""
    train, val = make_data(rows, 0), make_data(rows // 4, 1)  # a validation set a quarter the size
    torch.manual_seed(0)
    initial = create_model(name, in_features=FEATURES, out_features=1)
    scratch = Path(tempfile.mkdtemp(prefix="trainer-overhead-"))

    def fresh():
        return copy.deepcopy(initial)

    def trainer_full():
        folder = Path(tempfile.mkdtemp(dir=scratch))  # a new run folder: nothing to resume
        trainer_fit(fresh(), train, epochs, batch, val=val, folder=folder)

    variants = {
        "plain": lambda: plain_loop(fresh(), train, epochs, batch),
        "trainer": lambda: trainer_fit(fresh(), train, epochs, batch),
        "plain+val+ckpt": lambda: plain_loop(fresh(), train, epochs, batch, val=val, checkpoint=scratch / "plain.pt"),
        "trainer+val+ckpt": trainer_full,
    }
    # One untimed round of each: lazy imports (sklearn), allocator warm-up.
    small = make_data(batch * 2, 2)
    plain_loop(fresh(), small, 1, batch, val=val, checkpoint=scratch / "warm.pt")
    trainer_fit(fresh(), small, 1, batch, val=val, folder=Path(tempfile.mkdtemp(dir=scratch)))

    return interleave(variants, rounds, epochs)


def interleave(variants: dict, rounds: int, epochs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run each variant once a round, in an order that rotates; wall and CPU seconds per epoch."""
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    names = list(variants)
    for round_ in range(rounds):
        for offset in range(len(names)):
            variant = names[(round_ + offset) % len(names)]
            start, start_cpu = time.perf_counter(), time.process_time()
            variants[variant]()
            wall[variant].append((time.perf_counter() - start) / epochs)
            cpu[variant].append((time.process_time() - start_cpu) / epochs)
    return wall, cpu


def overhead(a: list[float], b: list[float]) -> tuple[float, float]:
    """(median over rounds of a/b - 1, min(a)/min(b) - 1)."""
    return statistics.median(x / y for x, y in zip(a, b)) - 1, min(a) / min(b) - 1


# ------------------------------------------------------------------ per-step account
def step_breakdown(batch: int) -> list[tuple[str, float]]:
    """Microseconds each trainer-only operation adds to one CPU training step (timeit, best of 7)."""
    from medtorch.training.trainer import _ProgressBar

    model = create_model("mlp", in_features=FEATURES, out_features=1)
    config = TrainConfig(epochs=1000, device="cpu")
    x, device = torch.randn(batch, FEATURES), torch.device("cpu")
    output, loss = model(x), torch.tensor(0.5)
    batch_indices, bar = torch.randperm(batch * 4)[:batch], _ProgressBar(False, 1, 0)

    total = torch.zeros(2, dtype=torch.float64)

    def precision_context():
        with nullcontext():
            pass

    def accumulate_loss():
        total[0] += loss.detach() * len(x)
        total[1] += len(x)

    def bookkeeping():
        bar.batch_done()
        return config.grad_clip, len(x)

    operations = {
        "x.device != device check (no copy on CPU)": lambda: x.device != device,
        "precision context (nullcontext on CPU)": precision_context,
        "output.float() (a no-op in float32)": output.float,
        "on-device loss sum for the logged training loss": accumulate_loss,
        "batch[rank::world] share of the global batch": lambda: batch_indices[0::1],
        "progress bar call, grad_clip check, counters": bookkeeping,
    }
    results = []
    for label, call in operations.items():
        number = 20_000
        best = min(timeit.repeat(call, number=number, repeat=7)) / number
        results.append((label, best * 1e6))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "ft_transformer"])
    parser.add_argument("--rows", type=int, default=20_000, help="training rows (mlp)")
    parser.add_argument("--ft-rows", type=int, default=1_280, help="training rows for ft_transformer (~0.7 s a step on one thread)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per timed run (mlp)")
    parser.add_argument("--ft-epochs", type=int, default=2, help="epochs per timed run (ft_transformer)")
    parser.add_argument("--rounds", type=int, default=15, help="timed runs per variant (mlp)")
    parser.add_argument("--ft-rounds", type=int, default=5, help="timed runs per variant (ft_transformer)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--profile", metavar="MODEL", help="profile the trainer and the plain loop on MODEL instead")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.profile:
        profile(args.profile, args.ft_rows if args.profile == "ft_transformer" else args.rows, args.batch)
        return

    results = {}
    for name in args.models:
        ft = name == "ft_transformer"
        rows, epochs, rounds = (args.ft_rows, args.ft_epochs, args.ft_rounds) if ft else (args.rows, args.epochs, args.rounds)
        results[name] = (rows, epochs, rounds, measure(name, rows, args.batch, epochs, rounds))
        print(f"{name}: done", file=sys.stderr, flush=True)
    breakdown = step_breakdown(args.batch)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, "
        f"batch {args.batch}, 1-minute load average at the end {load:.1f}\n"
    )
    print("Training loop (the 5% limit): wall seconds per epoch, median of the timed runs\n")
    print(
        "| model | rows | steps/epoch | epochs × runs | plain loop | trainer | overhead, wall (median of paired ratios) "
        "| overhead, wall (fastest runs) | overhead, CPU time (median of paired ratios) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (rows, epochs, rounds, (times, cpu)) in results.items():
        paired, fastest = overhead(times["trainer"], times["plain"])
        paired_cpu, _ = overhead(cpu["trainer"], cpu["plain"])
        print(
            f"| {name} | {rows:,} | {-(-rows // args.batch)} | {epochs} × {rounds} | {statistics.median(times['plain']):.4f} | "
            f"{statistics.median(times['trainer']):.4f} | {paired:+.1%} | {fastest:+.1%} | {paired_cpu:+.1%} |"
        )
    print("\nWith a validation pass and a checkpoint every epoch: seconds per epoch, median of the timed runs\n")
    print("| model | plain + val + ckpt | trainer + val + ckpt | trainer overhead (paired / fastest) | trainer + val + ckpt over the plain loop alone |")
    print("|---|---:|---:|---:|---:|")
    for name, (rows, epochs, rounds, (times, _)) in results.items():
        paired, fastest = overhead(times["trainer+val+ckpt"], times["plain+val+ckpt"])
        total, _ = overhead(times["trainer+val+ckpt"], times["plain"])
        print(
            f"| {name} | {statistics.median(times['plain+val+ckpt']):.4f} | {statistics.median(times['trainer+val+ckpt']):.4f} | "
            f"{paired:+.1%} / {fastest:+.1%} | {total:+.1%} |"
        )
    if "mlp" in results:
        step = min(results["mlp"][3][0]["plain"]) / -(-results["mlp"][0] // args.batch)
        print(f"\nPer training step, what the trainer adds (timeit, best of 7); a plain mlp step takes {step * 1e6:.0f} µs\n")
        print("| operation | µs per step | share of a plain mlp step |")
        print("|---|---:|---:|")
        for label, micro in breakdown:
            print(f"| {label} | {micro:.2f} | {micro / (step * 1e6):.2%} |")
        added = sum(micro for _, micro in breakdown)
        print(f"| **all of the above** | **{added:.2f}** | **{added / (step * 1e6):.2%}** |")
    raw = {name: {k: [round(t, 4) for t in v] for k, v in times.items()} for name, (*_, (times, _)) in results.items()}
    print("\nraw seconds per epoch, per run:", raw)


if __name__ == "__main__":
    main()
