"""`Trainer`: one training loop for every gpt2kit head.

It needs only `model(**batch).loss`: batches are dicts whose keys are the forward's argument
names (keys the forward does not take are dropped before the call, so collators may carry
extras such as example ids).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import distributed as dist_utils
from .arguments import TrainingArguments
from .distributed import SeededBatchSampler, unwrap
from .optim import create_optimizer, create_scheduler, schedule_lambda
from .state import (
    TrainerState,
    load_checkpoint,
    load_latest_checkpoint,
    load_weights,
    rotate_checkpoints,
    save_checkpoint,
    write_model,
)

logger = logging.getLogger("gpt2kit")

LABEL_KEYS = ("labels", "mc_labels", "start_positions", "end_positions")
PREDICTION_FIELDS = ("logits", "mc_logits", "start_logits", "end_logits")
LOG_FILE = "log.jsonl"
PAD_VALUES = {"labels": -100, "attention_mask": 0}


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) in one call.

    Example:
        >>> set_seed(0); a = torch.rand(1); set_seed(0); bool(torch.equal(a, torch.rand(1)))
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class EvalPrediction:
    """What `compute_metrics` receives: model outputs and labels over the whole eval set.

    `predictions` is the `logits` tensor, or a tuple when the model returns several
    (`start_logits`, `end_logits`); `label_ids` likewise for several label keys. Batches
    of different lengths are padded with -100 before concatenation.
    """

    predictions: Any
    label_ids: Any


@dataclass
class TrainOutput:
    """What `Trainer.train` returns."""

    global_step: int
    training_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    stopped_early: bool = False
    skipped_steps: int = 0
    best_checkpoint: str | None = None


def default_collate(features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack a list of examples into a batch, right-padding sequences of different lengths.

    Pads `labels` with -100 (ignored by the losses), `attention_mask` and everything else
    with 0. Non-numeric values (strings, ids) are kept as lists.

    Example:
        >>> b = default_collate([{"input_ids": [1, 2, 3], "labels": 1}, {"input_ids": [4], "labels": 0}])
        >>> b["input_ids"].tolist(), b["labels"].tolist()
        ([[1, 2, 3], [4, 0, 0]], [1, 0])
    """
    batch: dict[str, Any] = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if isinstance(values[0], str) or values[0] is None:
            batch[key] = values
            continue
        tensors = [torch.as_tensor(v) for v in values]
        if all(t.shape == tensors[0].shape for t in tensors):
            batch[key] = torch.stack(tensors)
            continue
        if any(t.dim() == 0 for t in tensors):
            raise ValueError(
                f"key {key!r} mixes scalars and sequences; make every example's {key!r} one kind"
            )
        shape = [len(tensors)] + [max(t.shape[d] for t in tensors) for d in range(tensors[0].dim())]
        out = torch.full(shape, PAD_VALUES.get(key, 0), dtype=tensors[0].dtype)
        for i, t in enumerate(tensors):
            out[(i, *[slice(0, s) for s in t.shape])] = t
        batch[key] = out
    return batch


def _pad_cat(chunks: list[torch.Tensor], pad: float = -100) -> torch.Tensor:
    """Concatenate along dim 0, padding the other dims to the largest (token-level outputs)."""
    if all(c.shape[1:] == chunks[0].shape[1:] for c in chunks):
        return torch.cat(chunks)
    shape = [sum(c.shape[0] for c in chunks)] + [
        max(c.shape[d] for c in chunks) for d in range(1, chunks[0].dim())
    ]
    out = torch.full(shape, pad, dtype=chunks[0].dtype)
    row = 0
    for c in chunks:
        out[(slice(row, row + c.shape[0]), *[slice(0, s) for s in c.shape[1:]])] = c
        row += c.shape[0]
    return out


def _flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metric dicts (`{"per_type": {"PER": {"f1": 1.0}}}`) as `per_type/PER/f1` floats."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float, np.number)) or (
            isinstance(value, torch.Tensor) and value.numel() == 1
        ):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def _count_tokens(batch: dict[str, Any]) -> int:
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return int(mask.sum())
    if isinstance(batch.get("text_spans"), torch.Tensor):
        # packed rows: a [R, 1, L, L] mask counts token pairs; the spans count the tokens
        spans = batch["text_spans"]
        return int((spans[:, 2] - spans[:, 1]).sum())
    if isinstance(batch.get("input_ids"), torch.Tensor):
        return batch["input_ids"].numel()
    return 0


def _loss_weight(batch: dict[str, Any], out: Any) -> int:
    """How many terms a batch's mean loss averages, so the eval loss is a mean over them.

    Class-id labels count their entries that are not -100 (tokens of an LM, tags, the texts
    packed into rows), shifted by one for next-token losses; otherwise one per row. Weighting
    by rows instead would make an LM's perplexity, or packed classification's loss, depend on
    the eval batch size.
    """
    labels = batch.get("labels")
    if isinstance(labels, torch.Tensor) and not labels.is_floating_point():
        # (an encoder-decoder's Seq2SeqLMOutput scores its labels unshifted)
        if type(out).__name__ in ("CausalLMOutput", "DoubleHeadsModelOutput"):
            labels = labels[..., 1:]
        return int((labels != -100).sum())
    return next((v.shape[0] for v in batch.values() if isinstance(v, torch.Tensor)), 1)


class Trainer:
    """Train and evaluate any gpt2kit model; checkpoints resume bit-exactly.

    Args:
        model: any module whose forward returns an output with `.loss` when the batch has
            labels (every gpt2kit head).
        args: the run's `TrainingArguments`.
        train_dataset: indexable dataset of examples (dicts); `len()` must work.
        eval_dataset: same, for evaluation.
        data_collator: list of examples -> batch dict; default `default_collate`.
        compute_metrics: `EvalPrediction -> dict[str, float]`, merged into the evaluation
            metrics as `eval_<name>`.
        callbacks: objects with any of `on_train_begin(trainer)`, `on_step_end(trainer)`,
            `on_log(trainer, logs)`, `on_evaluate(trainer, metrics)`, `on_save(trainer, path)`,
            `on_train_end(trainer)`.
        tokenizer: saved into every checkpoint when given.
        preprocess_logits_for_metrics: `(predictions, labels) -> predictions`, applied per
            eval batch (e.g. an argmax so an LM's `[B, T, V]` logits are not all kept).

    Example:
        >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
        >>> import tempfile
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
        >>> data = [{"input_ids": torch.arange(8) % 5, "labels": torch.arange(8) % 5}] * 16
        >>> args = TrainingArguments(tempfile.mkdtemp(), max_steps=3, disable_tqdm=True, learning_rate=1e-2)
        >>> out = Trainer(model, args, data).train()
        >>> out.global_step
        3
    """

    def __init__(
        self,
        model: nn.Module,
        args: TrainingArguments,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        data_collator: Callable[[list[Any]], dict[str, Any]] | None = None,
        compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
        callbacks: Iterable[Any] | None = None,
        tokenizer: Any = None,
        preprocess_logits_for_metrics: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self.model = model
        self.args = args
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.data_collator = data_collator or default_collate
        self.compute_metrics = compute_metrics
        self.callbacks = list(callbacks or [])
        self.tokenizer = tokenizer
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self.state = TrainerState()
        self.log_history: list[dict[str, Any]] = []
        self.output_dir = Path(args.output_dir)
        self.device = self._resolve_device()
        self.distributed = dist_utils.init_distributed(self.device, args.ddp_backend)
        self.rank, self.world_size = dist_utils.get_rank(), dist_utils.get_world_size()
        self.is_main = self.rank == 0
        self.fsdp = False  # set by train(): the model was sharded with FSDP2
        params = inspect.signature(unwrap(model).forward).parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        self._forward_keys = None if takes_kwargs else set(params)
        self._stop_requested: str | None = None
        self._tb = None
        if args.fp16 and self.device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device; on CPU use bf16=True")

    # -- setup ----------------------------------------------------------------------------------
    def _resolve_device(self) -> torch.device:
        if self.args.device:
            return torch.device(self.args.device)
        if torch.cuda.is_available():
            return torch.device("cuda", dist_utils.local_rank())
        return torch.device("cpu")

    def request_stop(self, reason: str = "requested") -> None:
        """Stop at the next step boundary, after writing a checkpoint (callbacks may call this)."""
        self._stop_requested = reason

    def _callback(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self, *args)

    def _prepare(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Move tensors to the device and keep only the keys the forward takes."""
        out = {}
        for key, value in batch.items():
            if self._forward_keys is not None and key not in self._forward_keys:
                continue
            out[key] = (
                value.to(self.device, non_blocking=True)
                if isinstance(value, torch.Tensor)
                else value
            )
        return out

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.args.bf16 or self.args.fp16:
            dtype = torch.bfloat16 if self.args.bf16 else torch.float16
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def _loader(
        self, dataset: Any, batch_size: int, epoch: int, shuffle: bool, skip: int = 0
    ) -> DataLoader:
        sampler = SeededBatchSampler(
            len(dataset),
            batch_size,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            epoch=epoch,
            rank=self.rank if shuffle else 0,
            world_size=self.world_size if shuffle else 1,
            shuffle=shuffle,
            drop_last=self.args.dataloader_drop_last and shuffle,
            skip_batches=skip,
        )
        # A private generator: creating a DataLoader iterator otherwise draws from the global
        # torch RNG, which would shift dropout masks after a resume.
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            generator=torch.Generator().manual_seed(self.args.seed),
            pin_memory=self.device.type == "cuda",
        )

    # -- training -------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | Path | bool | None = None) -> TrainOutput:
        """Run training; `resume_from_checkpoint` is a checkpoint folder, or True for the newest
        one in `output_dir`. Returns a `TrainOutput`.
        """
        args = self.args
        if self.train_dataset is None:
            raise ValueError("Trainer.train needs a train_dataset")
        set_seed(args.seed)
        self._stop_requested = None
        self.fsdp = bool(args.fsdp) and self.distributed
        model = unwrap(self.model)
        if self.fsdp and getattr(model, "has_adapters", False):
            raise ValueError(
                "FSDP with LoRA adapters is not supported (the adapter is small: plain DDP "
                "replicates it cheaply); drop --fsdp / fsdp=..."
            )
        if not self.fsdp:  # FSDP moves each shard group to the device as it shards it
            model = model.to(self.device)
        self.model = model
        if args.gradient_checkpointing:
            if not hasattr(model, "gradient_checkpointing_enable"):
                raise ValueError(f"{type(model).__name__} has no gradient_checkpointing_enable()")
            model.gradient_checkpointing_enable()
        # FSDP shards in place, before the optimizer is built over the (sharded) parameters
        if self.fsdp:
            dist_utils.apply_fsdp(
                model,
                dist_utils.fsdp_mode(args.fsdp) or "full_shard",
                param_dtype=torch.bfloat16 if args.bf16 else None,
                device=self.device,
            )
        elif args.fsdp:
            logger.info(
                "fsdp=%r in a single process: nothing to shard, training as usual", args.fsdp
            )

        accum = args.gradient_accumulation_steps
        probe = SeededBatchSampler(
            len(self.train_dataset),
            args.per_device_train_batch_size,
            world_size=self.world_size,
            drop_last=args.dataloader_drop_last,
        )
        batches_per_epoch = probe.num_batches()
        if batches_per_epoch == 0:
            raise ValueError(
                f"the training set ({len(self.train_dataset)} examples) is smaller than one global "
                f"batch ({args.per_device_train_batch_size} x {self.world_size} processes) with "
                "dataloader_drop_last=True; lower the batch size or keep the last batch"
            )
        steps_per_epoch = math.ceil(batches_per_epoch / accum)
        max_steps = (
            args.max_steps
            if args.max_steps > 0
            else math.ceil(args.num_train_epochs * steps_per_epoch)
        )
        warmup = (
            args.warmup_steps if args.warmup_steps > 0 else math.ceil(args.warmup_ratio * max_steps)
        )

        self.optimizer = create_optimizer(
            model,
            lr=args.learning_rate,
            weight_decay=args.weight_decay,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
            fused=args.optim_fused,
        )
        self.scheduler = create_scheduler(self.optimizer, args.lr_scheduler_type, warmup, max_steps)
        self._schedule = (warmup, max_steps)  # max_time_minutes may shorten the schedule
        self.scaler = torch.amp.GradScaler("cuda", enabled=args.fp16) if args.fp16 else None
        self.state = TrainerState(max_steps=max_steps)

        if resume_from_checkpoint:
            if resume_from_checkpoint is True:  # the newest that reads (a damaged one is skipped)
                found = load_latest_checkpoint(
                    self.output_dir, model, self.optimizer, self.scheduler, self.scaler
                )
                if found is None:
                    raise FileNotFoundError(
                        f"resume_from_checkpoint=True but {self.output_dir} holds no "
                        "checkpoint-<step> folder; start without resuming or pass the checkpoint's path"
                    )
                folder, self.state = found
            else:
                folder = Path(resume_from_checkpoint)  # type: ignore[arg-type]
                self.state = load_checkpoint(
                    folder, model, self.optimizer, self.scheduler, self.scaler
                )
            self.state.max_steps = max_steps
            logger.info("resumed from %s at step %d", folder, self.state.global_step)

        self.wrapped = model
        if self.distributed and not self.fsdp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)

        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._open_tensorboard()
        old_handlers = self._install_signal_handlers()
        try:
            return self._train_loop(batches_per_epoch, max_steps)
        finally:
            self._restore_signal_handlers(old_handlers)
            if self._tb is not None:
                self._tb.close()
                self._tb = None

    def _train_loop(self, batches_per_epoch: int, max_steps: int) -> TrainOutput:
        args, state = self.args, self.state
        accum = args.gradient_accumulation_steps
        from tqdm.auto import tqdm

        bar = tqdm(
            total=max_steps,
            initial=state.global_step,
            desc="train",
            disable=args.disable_tqdm or not self.is_main,
            dynamic_ncols=True,
        )
        self._callback("on_train_begin")
        loss_since_log, steps_since_log, tokens_since_log = (
            torch.zeros((), device=self.device),
            0,
            0,
        )
        total_loss, total_steps = 0.0, 0
        last_eval_step = last_save_step = -1
        stopped_early = interrupted = False
        metrics: dict[str, float] = {}
        t_log = t_start = time.perf_counter()
        time_up = False
        state_start_step = state.global_step

        while state.global_step < max_steps and not (stopped_early or interrupted):
            loader = self._loader(
                self.train_dataset,
                args.per_device_train_batch_size,
                state.epoch,
                shuffle=True,
                skip=state.batches_in_epoch,
            )
            batches = iter(loader)
            epoch = state.epoch
            while state.epoch == epoch and state.global_step < max_steps:
                n_micro = min(accum, batches_per_epoch - state.batches_in_epoch)
                micro = [next(batches) for _ in range(n_micro)]
                loss, tokens = self._optimizer_step(micro)
                state.batches_in_epoch += n_micro
                state.global_step += 1
                state.tokens_seen += tokens * self.world_size
                loss_since_log += loss
                steps_since_log += 1
                tokens_since_log += tokens * self.world_size
                if state.batches_in_epoch >= batches_per_epoch:
                    state.epoch += 1
                    state.batches_in_epoch = 0
                bar.update(1)
                step = state.global_step
                self._callback("on_step_end")

                if step % args.logging_steps == 0 or step == max_steps:
                    mean = dist_utils.all_reduce_mean(loss_since_log / steps_since_log).item()
                    elapsed = time.perf_counter() - t_log
                    record = {
                        "step": step,
                        "epoch": round(state.epoch + state.batches_in_epoch / batches_per_epoch, 4),
                        "loss": mean,
                        "lr": self.scheduler.get_last_lr()[0],
                        "tokens_per_s": round(tokens_since_log / max(elapsed, 1e-9), 1),
                    }
                    if self._last_grad_norm is not None:
                        record["grad_norm"] = self._last_grad_norm
                    if state.skipped_steps:
                        record["skipped_steps"] = state.skipped_steps
                    self._log(record)
                    bar.set_postfix(
                        loss=f"{mean:.4f}",
                        lr=f"{record['lr']:.2e}",
                        tok_s=f"{record['tokens_per_s']:.0f}",
                    )
                    total_loss += mean * steps_since_log
                    total_steps += steps_since_log
                    loss_since_log.zero_()
                    steps_since_log, tokens_since_log, t_log = 0, 0, time.perf_counter()

                save_now = bool(args.save_steps and step % args.save_steps == 0)
                if (
                    self.eval_dataset is not None
                    and args.eval_steps
                    and step % args.eval_steps == 0
                ):
                    metrics = self.evaluate()
                    last_eval_step = step
                    improved, stopped_early = self._track_best(metrics)
                    save_now = save_now or improved
                stop_reason = self._stop_requested
                if self.distributed:
                    stop_reason = (
                        "signal" if dist_utils.any_rank(bool(stop_reason), self.device) else None
                    )
                interrupted = stop_reason is not None
                if save_now or interrupted or (stopped_early and args.save_at_end):
                    self._save(step)
                    last_save_step = step
                if args.max_time_minutes and step >= 2:
                    # the time budget shortens the LR schedule: its end is the step the run
                    # reaches when time is up (at the pace so far), not max_steps
                    pace = (time.perf_counter() - t_start) / (step - state_start_step or 1)
                    reach = state_start_step + math.ceil(60 * args.max_time_minutes / pace)
                    total = min(self._schedule[1], max(step + 1, reach))
                    fit = schedule_lambda(args.lr_scheduler_type, self._schedule[0], total)
                    self.scheduler.lr_lambdas = [fit] * len(self.scheduler.lr_lambdas)
                if (
                    args.max_time_minutes
                    and time.perf_counter() - t_start > 60 * args.max_time_minutes
                ):
                    # a time budget ends the run like max_steps does: final eval and save follow
                    logger.info(
                        "max_time_minutes=%s reached at step %d", args.max_time_minutes, step
                    )
                    stopped_early = True
                    time_up = True
                if interrupted or stopped_early:
                    if interrupted:
                        logger.warning(
                            "training stopped at step %d (%s); checkpoint written",
                            step,
                            stop_reason,
                        )
                    break
                if step % args.logging_steps == 0:
                    t_log = time.perf_counter()  # exclude eval/save time from throughput

        bar.close()
        step = state.global_step
        if not interrupted:
            if self.eval_dataset is not None and last_eval_step != step:
                metrics = self.evaluate()
                improved, _ = self._track_best(metrics)
                if improved or (args.save_at_end and last_save_step != step):
                    self._save(step)
                    last_save_step = step
            if args.save_at_end and last_save_step != step:
                self._save(step)
            if args.load_best_model_at_end and state.best_checkpoint:
                load_weights(self.model, self.output_dir / state.best_checkpoint)
                logger.info("loaded the best checkpoint %s", state.best_checkpoint)
            if self.is_main:
                self._plot()
        self._callback("on_train_end")
        if steps_since_log:
            total_loss += (
                dist_utils.all_reduce_mean(loss_since_log / steps_since_log).item()
                * steps_since_log
            )
            total_steps += steps_since_log
        return TrainOutput(
            global_step=step,
            training_loss=total_loss / max(total_steps, 1),
            metrics=metrics,
            interrupted=interrupted,
            stopped_early=stopped_early and not time_up,
            skipped_steps=state.skipped_steps,
            best_checkpoint=str(self.output_dir / state.best_checkpoint)
            if state.best_checkpoint
            else None,
        )

    _last_grad_norm: float | None = None

    def _training_only_loss(self, batch: dict[str, Any]) -> dict[str, Any]:
        """`return_logits=False` for an LM head given labels: a training step needs the loss
        only, and the head's chunked loss never builds the `[B, T, V]` logits (~1.4x faster
        LM-head step on CPU, far less memory)."""
        if "labels" not in batch or "return_logits" in batch:
            return {}
        params = inspect.signature(unwrap(self.model).forward).parameters
        return {"return_logits": False} if "return_logits" in params else {}

    def _optimizer_step(self, micro: list[dict[str, Any]]) -> tuple[torch.Tensor, int]:
        """Forward/backward over the micro-batches, then one optimizer step (or a skip)."""
        args, model = self.args, self.wrapped
        model.train()
        n = len(micro)
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        for i, raw in enumerate(micro):
            batch = self._prepare(raw)
            tokens += _count_tokens(batch)
            # DDP/FSDP: reduce gradients only on the last micro-batch of the step
            sync = i == n - 1 or not self.distributed
            with contextlib.nullcontext() if sync else dist_utils.no_sync(model):
                with self._autocast():
                    out = model(**batch, **self._training_only_loss(batch))
                loss = out.loss if hasattr(out, "loss") else out["loss"]
                if loss is None:
                    raise ValueError(
                        f"{type(unwrap(model)).__name__} returned no loss: the batch must carry its "
                        f"labels (batch keys: {', '.join(batch)})"
                    )
                scaled = loss.float() / n
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss_sum += loss.detach().float()
        mean_loss = loss_sum / n

        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if args.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm, foreach=True)
        else:
            norm = torch.nn.utils.get_total_norm(
                [p.grad for p in params if p.grad is not None], foreach=True
            )
        self._last_grad_norm = dist_utils.to_local_float(norm)  # FSDP: a DTensor
        # fp16 overflow is the scaler's business (it skips and lowers the scale); anything
        # else non-finite means the run is broken and must not go on silently.
        bad = not math.isfinite(float(mean_loss)) or (
            self.scaler is None and not math.isfinite(self._last_grad_norm)
        )
        bad = dist_utils.any_rank(bad, self.device)
        if bad:
            step = self.state.global_step + 1
            what = f"non-finite loss ({float(mean_loss)}) or gradient norm ({self._last_grad_norm}) at step {step}"
            if args.nan_policy == "error":
                self.optimizer.zero_grad(set_to_none=True)
                raise FloatingPointError(
                    f"{what} (epoch {self.state.epoch}, micro-batch {self.state.batches_in_epoch}). "
                    "Lower the learning rate, keep gradient clipping on, check the inputs and labels, "
                    "or pass nan_policy='skip' to drop such steps"
                )
            self.state.skipped_steps += 1
            logger.warning("%s: step skipped (%d so far)", what, self.state.skipped_steps)
            mean_loss = torch.zeros((), device=self.device)
        elif self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        # the schedule follows the step count even over skipped steps
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean_loss.detach(), tokens

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self, eval_dataset: Any = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Mean loss over the eval set (plus `compute_metrics`' metrics), logged and returned.

        Every process evaluates the whole set, so all ranks agree on the best model without
        communicating.
        """
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluate needs an eval_dataset (pass it here or to Trainer)")
        model = unwrap(self.model).to(self.device)
        was_training = model.training
        model.eval()
        loss_sum, count = 0.0, 0
        preds: list[list[torch.Tensor]] = []
        labels: list[list[torch.Tensor]] = []
        is_lm = False
        for raw in self._loader(dataset, self.args.eval_batch_size, 0, shuffle=False):
            batch = self._prepare(raw)
            with self._autocast():
                out = model(**batch)
            if getattr(out, "loss", None) is not None:
                weight = _loss_weight(batch, out)
                if weight:
                    loss_sum += float(out.loss) * weight
                    count += weight
            is_lm = is_lm or type(out).__name__ == "CausalLMOutput"
            if self.compute_metrics is not None:
                p = [
                    getattr(out, f).float().cpu()
                    for f in PREDICTION_FIELDS
                    if getattr(out, f, None) is not None
                ]
                y = [batch[k].cpu() for k in LABEL_KEYS if isinstance(batch.get(k), torch.Tensor)]
                p_obj: Any = p[0] if len(p) == 1 else tuple(p)
                y_obj: Any = y[0] if len(y) == 1 else tuple(y)
                if self.preprocess_logits_for_metrics is not None:
                    p_obj = self.preprocess_logits_for_metrics(p_obj, y_obj)
                preds.append(list(p_obj) if isinstance(p_obj, tuple) else [p_obj])
                labels.append(y)
        if was_training:
            model.train()
        metrics: dict[str, float] = {}
        if count:
            metrics["loss"] = loss_sum / count
            if is_lm:
                metrics["perplexity"] = math.exp(min(metrics["loss"], 50.0))
        if self.compute_metrics is not None and preds:
            columns = [_pad_cat([b[j] for b in preds]) for j in range(len(preds[0]))]
            label_cols = (
                [_pad_cat([b[j] for b in labels]) for j in range(len(labels[0]))]
                if labels[0]
                else []
            )
            prediction = EvalPrediction(
                predictions=columns[0] if len(columns) == 1 else tuple(columns),
                label_ids=(label_cols[0] if len(label_cols) == 1 else tuple(label_cols))
                if label_cols
                else None,
            )
            metrics.update(_flatten(self.compute_metrics(prediction)))
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in metrics.items()}
        self._log({"step": self.state.global_step, **metrics})
        self._callback("on_evaluate", metrics)
        return metrics

    def _track_best(self, metrics: dict[str, float]) -> tuple[bool, bool]:
        """Update the best metric; returns (improved, stop early)."""
        args, state = self.args, self.state
        key = f"eval_{args.metric_for_best_model}"
        if key not in metrics:
            raise ValueError(
                f"metric_for_best_model={args.metric_for_best_model!r} is not among the evaluation "
                f"metrics ({', '.join(sorted(metrics))}); pick one of those or add it in compute_metrics"
            )
        value, best, eps = metrics[key], state.best_metric, args.early_stopping_threshold
        improved = best is None or (
            value > best + eps if args.greater_is_better else value < best - eps
        )
        if improved:
            state.best_metric = value
            state.best_checkpoint = f"checkpoint-{state.global_step}"
            state.evals_without_improvement = 0
        else:
            state.evals_without_improvement += 1
        patience = args.early_stopping_patience
        stop = patience is not None and state.evals_without_improvement >= patience
        if stop:
            logger.info(
                "early stopping at step %d: %s did not improve for %d evaluations",
                state.global_step,
                key,
                patience,
            )
        return improved, stop

    # -- checkpoints and logs -------------------------------------------------------------------
    def _save(self, step: int) -> Path:
        folder = self.output_dir / f"checkpoint-{step}"
        # FSDP: every rank takes part in gathering the full weights and optimizer state
        sharded = dist_utils.is_fsdp(self.model)
        full = dist_utils.gather_full_state(self.model, self.optimizer) if sharded else None
        if self.is_main:
            save_checkpoint(
                folder,
                unwrap(self.model),
                self.optimizer,
                self.scheduler,
                self.state,
                scaler=self.scaler,
                args_dict=self.args.to_dict(),
                tokenizer=self.tokenizer,
                full_state=full,
            )
            rotate_checkpoints(self.output_dir, self.args.save_total_limit, keep=self._best_path())
            self._callback("on_save", folder)
        dist_utils.barrier()
        return folder

    def _best_path(self) -> Path | None:
        return self.output_dir / self.state.best_checkpoint if self.state.best_checkpoint else None

    def save_model(self, output_dir: str | Path | None = None) -> Path:
        """Write the (unwrapped) model and tokenizer with `save_pretrained` (rank 0 only).

        Under FSDP every rank must call it: the full weights are gathered first.
        """
        target = Path(output_dir or self.output_dir)
        weights = (
            dist_utils.gather_full_state(self.model)[0] if dist_utils.is_fsdp(self.model) else None
        )
        if self.is_main:
            write_model(unwrap(self.model), target, self.tokenizer, weights=weights)
        dist_utils.barrier()
        return target

    def _log(self, record: dict[str, Any]) -> None:
        self.log_history.append(record)
        self._callback("on_log", record)
        if not self.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(
                        key if key.startswith("eval_") else f"train/{key}", value, record["step"]
                    )

    def _open_tensorboard(self) -> None:
        if not self.args.report_to_tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: JSONL only
            return
        self._tb = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def _plot(self) -> None:
        """`training_curves.png`: training loss and eval metrics over steps (needs matplotlib)."""
        if not self.args.plot:
            return
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        records = []
        path = self.output_dir / LOG_FILE
        if path.is_file():  # the whole run, across resumes
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        train = [(r["step"], r["loss"]) for r in records if "loss" in r]
        evals = sorted(
            {
                k
                for r in records
                for k in r
                if k.startswith("eval_") and isinstance(r[k], (int, float))
            }
        )
        fig, axes = plt.subplots(
            1, 1 + len(evals), figsize=(4 * (1 + len(evals)), 3), squeeze=False
        )
        if train:
            axes[0][0].plot(*zip(*train, strict=True))
        axes[0][0].set(title="train loss", xlabel="step")
        for ax, key in zip(axes[0][1:], evals, strict=True):
            points = [(r["step"], r[key]) for r in records if key in r]
            ax.plot(*zip(*points, strict=True), marker="o")
            ax.set(title=key, xlabel="step")
        fig.tight_layout()
        fig.savefig(self.output_dir / "training_curves.png", dpi=100)
        plt.close(fig)

    # -- signals --------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any]:
        if (
            not self.args.handle_signals
            or threading.current_thread() is not threading.main_thread()
        ):
            return {}
        old = {}

        def handler(signum: int, frame: Any) -> None:
            self.request_stop(signal.Signals(signum).name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    @staticmethod
    def _restore_signal_handlers(old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)
