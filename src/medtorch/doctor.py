"""``medtorch doctor``: is this installation what the constraints file promises?

>>> problems = check_installation(print)
"""

from __future__ import annotations

from importlib.metadata import distributions
from typing import Callable


def check_installation(echo: Callable[[str], None] = print) -> list[str]:
    """Print versions; return problems (CUDA torch on a CPU install, ``nvidia-*`` packages)."""
    import numpy
    import sklearn
    import torch

    from medtorch.training.trainer import cpu_has_native_bf16
    from medtorch.version import __version__

    echo(f"medtorch {__version__}, torch {torch.__version__} (cuda {torch.version.cuda}), numpy {numpy.__version__}, scikit-learn {sklearn.__version__}")
    native = cpu_has_native_bf16()
    echo(f"CPU: {torch.backends.cpu.get_cpu_capability()}, native bf16: {'yes' if native else 'no (train.mixed_precision: true trains in fp32 here)'}")
    problems = []
    nvidia = sorted(d.metadata["Name"] for d in distributions() if (d.metadata["Name"] or "").lower().startswith("nvidia-"))
    if nvidia:
        problems.append(f"CUDA packages were installed: {', '.join(nvidia[:5])}")
    if torch.version.cuda is not None:
        problems.append(f"torch {torch.__version__} is a CUDA build; install the CPU build pinned in constraints.txt")
    echo("ok: CPU-only torch, no nvidia-* packages" if not problems else "problems: " + "; ".join(problems))
    return problems
