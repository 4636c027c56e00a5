"""Training: `Trainer`, `TrainingArguments`, AdamW + schedules, exact-resume checkpoints, DDP.

Names load lazily so that `gpt2kit --help` (which registers `train`/`evaluate` from
`gpt2kit.cli.train`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainingArguments": "arguments",
    "SeededBatchSampler": "distributed",
    "create_optimizer": "optim",
    "create_scheduler": "optim",
    "param_groups": "optim",
    "schedule_lambda": "optim",
    "TrainerState": "state",
    "last_checkpoint": "state",
    "EvalPrediction": "trainer",
    "Trainer": "trainer",
    "TrainOutput": "trainer",
    "default_collate": "trainer",
    "set_seed": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gpt2kit.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
