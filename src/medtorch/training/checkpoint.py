"""Checkpoints as one safetensors file: tensors in the body, JSON state in its metadata.

No pickle anywhere, and the file is replaced atomically, so a process killed mid-write leaves
the previous checkpoint intact.

>>> save_checkpoint(path, {"model.w": w}, {"epoch": 3})
>>> tensors, state = load_checkpoint(path)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

STATE_KEY = "medtorch_state"


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Write ``tensors`` and the JSON-serialisable ``state`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    plain = {name: t.detach().cpu().clone().contiguous() for name, t in tensors.items()}
    save_file(plain, str(temporary), metadata={STATE_KEY: json.dumps(state)})
    os.replace(temporary, path)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and state written by :func:`save_checkpoint`."""
    with safe_open(str(path), framework="pt") as handle:
        state = json.loads(handle.metadata()[STATE_KEY])
    return load_file(str(path)), state


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}": t for name, t in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {name[start:]: t for name, t in tensors.items() if name.startswith(prefix + ".")}


def optimizer_to_flat(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors and JSON (per-parameter scalars, param groups)."""
    tensors, scalars = {}, {}
    for param_id, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{key}"] = value
            else:
                scalars[f"{param_id}.{key}"] = value
    return tensors, {"scalars": scalars, "param_groups": state_dict["param_groups"]}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], json_part: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_flat`."""
    state: dict[int, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *json_part["scalars"].items()]:
        param_id, key = flat.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": json_part["param_groups"]}
