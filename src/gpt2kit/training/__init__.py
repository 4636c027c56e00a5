"""Training: `Trainer`, `TrainingArguments`, AdamW + schedules, exact-resume checkpoints, DDP."""

from .arguments import TrainingArguments
from .distributed import SeededBatchSampler
from .optim import create_optimizer, create_scheduler, param_groups, schedule_lambda
from .state import TrainerState, last_checkpoint
from .trainer import EvalPrediction, Trainer, TrainOutput, default_collate, set_seed

__all__ = [
    "EvalPrediction",
    "SeededBatchSampler",
    "TrainOutput",
    "Trainer",
    "TrainerState",
    "TrainingArguments",
    "create_optimizer",
    "create_scheduler",
    "default_collate",
    "last_checkpoint",
    "param_groups",
    "schedule_lambda",
    "set_seed",
]
