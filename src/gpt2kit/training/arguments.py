"""`TrainingArguments`: every knob of a training run, in one dataclass.

Field names follow `transformers.TrainingArguments` where the same knob exists there, so a
config written for one reads for the other.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")
NAN_POLICIES = ("error", "skip")

# (field, kind, low, high, inclusive high): what every numeric option may hold. Checked when
# the arguments are built, and by `check_cli_options` before a run reads any data.
_INT, _FLOAT = "an integer", "a number"
RANGES: tuple[tuple[str, str, float | None, float | None, bool, bool], ...] = (
    # name, kind, low, high, optional (None allowed), high inclusive
    ("num_train_epochs", _FLOAT, 0, None, False, True),
    ("per_device_train_batch_size", _INT, 1, None, False, True),
    ("per_device_eval_batch_size", _INT, 1, None, True, True),
    ("gradient_accumulation_steps", _INT, 1, None, False, True),
    ("learning_rate", _FLOAT, 0, None, False, True),
    ("weight_decay", _FLOAT, 0, None, False, True),
    ("adam_beta1", _FLOAT, 0, 1, False, False),
    ("adam_beta2", _FLOAT, 0, 1, False, False),
    ("adam_epsilon", _FLOAT, 0, None, False, True),
    ("max_grad_norm", _FLOAT, 0, None, True, True),
    ("warmup_steps", _INT, 0, None, False, True),
    ("warmup_ratio", _FLOAT, 0, 1, False, True),
    ("seed", _INT, 0, 2**64 - 1, False, True),
    ("data_seed", _INT, 0, 2**64 - 1, True, True),
    ("eval_steps", _INT, 1, None, True, True),
    ("save_steps", _INT, 1, None, True, True),
    ("save_total_limit", _INT, 1, None, True, True),
    ("early_stopping_patience", _INT, 1, None, True, True),
    ("early_stopping_threshold", _FLOAT, 0, None, False, True),
    ("max_time_minutes", _FLOAT, 0, None, True, True),
    ("logging_steps", _INT, 1, None, False, True),
    ("dataloader_num_workers", _INT, 0, None, False, True),
)

# `gpt2kit train` flags -> the fields they set, so an out-of-range flag fails by its own name.
CLI_FLAGS = {
    "epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "lr": "learning_rate",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "warmup_steps": "warmup_steps",
    "warmup_ratio": "warmup_ratio",
    "seed": "seed",
    "eval_steps": "eval_steps",
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "early_stopping_patience": "early_stopping_patience",
    "logging_steps": "logging_steps",
    "max_minutes": "max_time_minutes",
    "num_workers": "dataloader_num_workers",
}


def check_option(name: str, value: Any, shown: str | None = None) -> None:
    """Raise `ValueError` naming `shown` (default `name`) when `value` is out of range for the
    training option `name` (wrong type, NaN/inf, negative where counts are meant...)."""
    shown = shown or name
    if name == "max_steps":
        if not isinstance(value, int) or isinstance(value, bool) or (value < 1 and value != -1):
            raise ValueError(
                f"{shown} must be a positive number of optimizer steps, or -1 to train for "
                f"num_train_epochs epochs; got {value!r}"
            )
        return
    for field_name, kind, low, high, optional, high_inclusive in RANGES:
        if field_name != name:
            continue
        if value is None:
            if optional:
                return
            raise ValueError(f"{shown} must be {kind}, got None")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{shown} must be {kind}, got {value!r} ({type(value).__name__})")
        if kind == _INT and not isinstance(value, int):
            raise ValueError(f"{shown} must be an integer, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{shown} must be a finite number, got {value!r}")
        too_high = high is not None and (value > high if high_inclusive else value >= high)
        if (low is not None and value < low) or too_high:
            span = f"[{low}, {'inf' if high is None else high}{']' if high_inclusive else ')'}"
            off = " (or None: off)" if optional else ""
            raise ValueError(f"{shown} must be in {span}{off}, got {value!r}")
        return


def check_cli_options(args: Any) -> None:
    """Check the numeric flags of `gpt2kit train` before any data or model is loaded."""
    for flag, name in CLI_FLAGS.items():
        if hasattr(args, flag):
            value = getattr(args, flag)
            if value is None and flag in ("lr", "weight_decay", "max_grad_norm"):
                continue  # None: the task's default
            check_option(name, value, shown=f"--{flag.replace('_', '-')}")


@dataclass
class TrainingArguments:
    """What to train for how long, how, and where to write it.

    Args:
        output_dir: checkpoints (`checkpoint-<step>/`), `log.jsonl`, plots and TensorBoard
            events go here.
        num_train_epochs: passes over the training set (ignored when `max_steps > 0`).
        max_steps: optimizer steps to take; `-1` means `num_train_epochs` epochs.
        per_device_train_batch_size: examples per micro-batch on each process. The global
            batch is this x `gradient_accumulation_steps` x the number of processes.
        per_device_eval_batch_size: examples per evaluation batch (default: the train size).
        gradient_accumulation_steps: micro-batches summed into one optimizer step.
        learning_rate: peak learning rate (reached at the end of warmup).
        weight_decay: AdamW decay, applied to 2-D weights only (matrices and embeddings);
            biases and LayerNorm weights are never decayed.
        adam_beta1, adam_beta2, adam_epsilon: AdamW moments and epsilon.
        optim_fused: use the fused AdamW kernel; `None` picks it when torch supports it on
            the device (CPU and CUDA in recent torch), else the `foreach` kernel.
        max_grad_norm: clip the global gradient norm to this; `0` or `None` disables.
        lr_scheduler_type: `linear`, `cosine` (to 0), `constant` (no warmup), or
            `constant_with_warmup`.
        warmup_steps: steps of linear warmup from 0; overrides `warmup_ratio` when > 0.
        warmup_ratio: warmup as a fraction of the total steps.
        seed: seeds model-side randomness (dropout) and the data order.
        data_seed: seeds the data order only (default: `seed`).
        bf16: autocast to bfloat16 (CPU and CUDA).
        fp16: autocast to float16 with a gradient scaler (CUDA only).
        gradient_checkpointing: recompute activations in backward (less memory, ~30% slower).
        eval_steps: evaluate every this many optimizer steps (and always at the end when an
            eval set is given); `None` evaluates only at the end.
        save_steps: write a resumable checkpoint every this many steps; `None`: only when an
            evaluation gives a new best, on interruption, and at the end.
        save_total_limit: keep at most this many checkpoints (the oldest go first; the best
            one is never deleted).
        save_at_end: write a last checkpoint when training ends.
        metric_for_best_model: evaluation metric that picks the best checkpoint, without the
            `eval_` prefix (`loss`, `accuracy`, `f1`, ...).
        greater_is_better: whether a higher metric is better; default: `False` for names
            ending in `loss` or `perplexity`, else `True`.
        load_best_model_at_end: load the best checkpoint's weights when training ends.
        early_stopping_patience: stop after this many evaluations without improvement
            (by more than `early_stopping_threshold`); `None` never stops early.
        early_stopping_threshold: the least improvement that counts.
        max_time_minutes: end training (final evaluation and checkpoint included) at the first
            step boundary after this many minutes; `None`: no time limit.
        logging_steps: log loss, learning rate and throughput every this many steps.
        nan_policy: on a non-finite loss or gradient norm: `error` stops with an error naming
            the step; `skip` drops that optimizer step (counted and logged).
        dataloader_num_workers: worker processes for data loading (0: in the main process).
        dataloader_drop_last: drop a last incomplete batch each epoch.
        disable_tqdm: no progress bar.
        report_to_tensorboard: also write TensorBoard events when `tensorboard` is installed.
        plot: draw `training_curves.png` at the end when `matplotlib` is installed.
        device: `cpu`, `cuda`, `cuda:1`...; default: CUDA when available, else CPU (under
            `torchrun`, each process takes `cuda:<local rank>`).
        ddp_backend: `gloo` or `nccl`; default: NCCL on CUDA, gloo on CPU.
        fsdp: under `torchrun` with more than one process, shard parameters, gradients and
            optimizer state over the processes with FSDP2 (`fully_shard` per transformer
            block, then the root) instead of replicating them with DDP. `True` or
            `"full_shard"`: each block's gathered weights are freed after its forward (least
            memory); `"shard_grad_op"`: kept until the backward (faster, more memory).
            With `bf16`, weights are gathered and used in bfloat16 (gradients reduced in
            float32). Ignored in a single process.
        handle_signals: on SIGINT/SIGTERM, write a checkpoint at the next step boundary and
            return instead of dying mid-step.

    Example:
        >>> args = TrainingArguments("out", max_steps=100, learning_rate=3e-4, warmup_steps=10)
        >>> args.total_batch_size(world_size=2)
        16
    """

    output_dir: str = "output"
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    optim_fused: bool | None = None
    max_grad_norm: float | None = 1.0
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    seed: int = 42
    data_seed: int | None = None
    bf16: bool = False
    fp16: bool = False
    gradient_checkpointing: bool = False
    eval_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = None
    save_at_end: bool = True
    metric_for_best_model: str = "loss"
    greater_is_better: bool | None = None
    load_best_model_at_end: bool = False
    early_stopping_patience: int | None = None
    early_stopping_threshold: float = 0.0
    max_time_minutes: float | None = None
    logging_steps: int = 10
    nan_policy: str = "error"
    dataloader_num_workers: int = 0
    dataloader_drop_last: bool = False
    disable_tqdm: bool = False
    report_to_tensorboard: bool = True
    plot: bool = True
    device: str | None = None
    ddp_backend: str | None = None
    fsdp: bool | str = False
    handle_signals: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.output_dir = str(self.output_dir)
        self.metric_for_best_model = self.metric_for_best_model.removeprefix("eval_")
        if self.greater_is_better is None:
            self.greater_is_better = not self.metric_for_best_model.endswith(("loss", "perplexity"))
        if self.lr_scheduler_type not in SCHEDULES:
            raise ValueError(
                f"lr_scheduler_type={self.lr_scheduler_type!r}: choose one of {', '.join(SCHEDULES)}"
            )
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy={self.nan_policy!r}: choose 'error' or 'skip'")
        from .distributed import fsdp_mode  # (torch.distributed loads only when checked)

        fsdp_mode(self.fsdp)  # a ValueError naming the choices for anything else
        if self.bf16 and self.fp16:
            raise ValueError("bf16 and fp16 are both set: pick one mixed-precision mode")
        check_option("max_steps", self.max_steps)
        for name, *_ in RANGES:
            check_option(name, getattr(self, name))
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError("set max_steps > 0 or num_train_epochs > 0: there is nothing to train")

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size or self.per_device_train_batch_size

    def total_batch_size(self, world_size: int = 1) -> int:
        """Examples per optimizer step over all processes."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * world_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingArguments:
        """Build from a dict; unknown keys are an error naming them (typos fail loudly)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown training argument(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return cls(**data)
