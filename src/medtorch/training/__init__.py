"""Training: the trainer, its checkpoints, and distributed (torchrun) support."""

from medtorch.training.trainer import Trainer, TrainResult, auto_batch_size

__all__ = ["TrainResult", "Trainer", "auto_batch_size"]
