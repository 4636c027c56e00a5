"""`gpt2kit train` and `gpt2kit evaluate`: fine-tune or train from scratch, and score a model.

`register(subparsers)` adds both subcommands to an argparse subparsers object (the
`gpt2kit` command calls it); `python -m gpt2kit train ...` works on its own.

Examples:
    gpt2kit train --task sequence-classification --model gpt2 --train-file train.csv \\
        --eval-file dev.csv --output-dir out --epochs 3 --lr 5e-5
    gpt2kit train --task causal-lm --model gpt2 --from-scratch --n-layer 4 --n-embd 256 \\
        --n-head 4 --train-file corpus.txt --output-dir lm --max-steps 2000 --lr 6e-4
    gpt2kit train --config run.yaml          # the same keys as the flags (dashes or underscores)
    torchrun --standalone --nproc-per-node 8 -m gpt2kit train ... --fsdp  # FSDP2
    gpt2kit evaluate --task sequence-classification --model out --eval-file test.csv --json m.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger("gpt2kit")

TASKS = (
    "causal-lm",
    "sequence-classification",
    "text-classification",
    "document-classification",
    "token-classification",
    "question-answering",
    "multiple-choice",
    "seq2seq",
    "conditional-generation",
)
# fine-tuning learning rates that work for GPT-2 small on each kind of task; from scratch
# a model wants a much larger one
DEFAULT_LR = {"causal-lm": 5e-5, "seq2seq": 5e-5, "conditional-generation": 1e-4}
FROM_SCRATCH_LR = 6e-4
DATA_OPTIONS = (
    "text_column",
    "text_pair_column",
    "label_column",
    "word_column",
    "tag_column",
    "source_column",
    "target_column",
    "context_column",
)
MODEL_SHAPE = ("n_layer", "n_embd", "n_head", "n_positions")


class TrainCLIError(ValueError):
    """A bad command line or config file; the message says what to change."""


# -- parsers ---------------------------------------------------------------------------------------
def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=TASKS, help="what the model does (required)")
    p.add_argument(
        "--model",
        help="model folder, Hub id, or a preset (gpt2, gpt2-medium, ...) with --from-scratch",
    )
    p.add_argument("--eval-file", help="evaluation data (same layout as the training data)")
    p.add_argument(
        "--max-length", type=int, help="tokens per example (default: per task, at most n_positions)"
    )
    p.add_argument(
        "--eval-batch-size", type=int, help="examples per evaluation batch (default: --batch-size)"
    )
    p.add_argument(
        "--batch-size", type=int, default=8, help="examples per micro-batch per process (8)"
    )
    for name in DATA_OPTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", help=f"data column: {name.replace('_', ' ')}")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU or GPU)")
    p.add_argument(
        "--fp16", action="store_true", help="float16 autocast with loss scaling (CUDA only)"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument(
        "--config", help="YAML or JSON file with any of these options (flags override it)"
    )


def register(subparsers: Any) -> None:
    """Add `train` and `evaluate` to an argparse subparsers object.

    Example:
        >>> parser = argparse.ArgumentParser(); register(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["train", "--task", "causal-lm", "--model", "gpt2"]).lr is None
        True
    """
    t = subparsers.add_parser(
        "train",
        help="fine-tune a model or train one from scratch",
        description="Fine-tune a model (or train one from scratch) on a task's data; checkpoints resume exactly.",
    )
    _add_common(t)
    t.add_argument(
        "--train-file",
        help="training data: text file (causal-lm), CSV/TSV/JSONL, CoNLL, SQuAD JSON",
    )
    t.add_argument(
        "--output-dir", help="checkpoints, log.jsonl and the final model go here (required)"
    )
    t.add_argument("--epochs", type=float, default=3.0, help="passes over the training data (3)")
    t.add_argument("--max-steps", type=int, default=-1, help="optimizer steps; overrides --epochs")
    t.add_argument("--lr", type=float, help="peak learning rate (default 5e-5; 6e-4 from scratch)")
    t.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="AdamW decay on 2-D weights (0; 0.1 from scratch)",
    )
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (1)")
    t.add_argument(
        "--max-grad-norm", type=float, default=1.0, help="gradient clipping norm; 0 disables (1.0)"
    )
    t.add_argument("--warmup-steps", type=int, default=0, help="linear warmup steps")
    t.add_argument("--warmup-ratio", type=float, default=0.0, help="warmup as a share of all steps")
    t.add_argument(
        "--schedule",
        default="linear",
        choices=["linear", "cosine", "constant", "constant_with_warmup"],
    )
    t.add_argument("--eval-steps", type=int, help="evaluate every N steps (and always at the end)")
    t.add_argument("--save-steps", type=int, help="write a resumable checkpoint every N steps")
    t.add_argument(
        "--save-total-limit", type=int, help="keep at most N checkpoints (never deleting the best)"
    )
    t.add_argument("--logging-steps", type=int, default=10, help="log every N steps (10)")
    t.add_argument(
        "--metric-for-best-model", default="loss", help="eval metric that picks the best checkpoint"
    )
    t.add_argument(
        "--greater-is-better", action="store_true", default=None, help="higher metric is better"
    )
    t.add_argument(
        "--early-stopping-patience", type=int, help="stop after N evaluations without improvement"
    )
    t.add_argument(
        "--load-best-model-at-end", action="store_true", help="final model = the best checkpoint"
    )
    t.add_argument(
        "--max-minutes",
        type=float,
        help="end training after this many minutes (then eval and save)",
    )
    t.add_argument("--seed", type=int, default=42)
    t.add_argument(
        "--grad-checkpointing", action="store_true", help="recompute activations: less memory"
    )
    t.add_argument(
        "--resume", nargs="?", const="auto", help="resume from a checkpoint folder (or the newest)"
    )
    t.add_argument(
        "--from-scratch", action="store_true", help="random init from --model's preset/config"
    )
    t.add_argument("--n-layer", type=int, help="with --from-scratch: layers")
    t.add_argument("--n-embd", type=int, help="with --from-scratch: width")
    t.add_argument("--n-head", type=int, help="with --from-scratch: attention heads")
    t.add_argument("--n-positions", type=int, help="with --from-scratch: context length")
    t.add_argument("--block-size", type=int, help="causal-lm: tokens per training block")
    t.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="causal-lm without --eval-file: held out",
    )
    t.add_argument(
        "--fsdp",
        nargs="?",
        const="full_shard",
        choices=["full_shard", "shard_grad_op"],
        help="under torchrun: shard weights, gradients and optimizer state over the processes "
        "(FSDP2) instead of DDP; optional mode: full_shard (default) or shard_grad_op",
    )
    t.add_argument(
        "--lora",
        help="train a LoRA adapter instead of every weight, e.g. r=8,alpha=16,targets=c_attn,c_proj,c_fc "
        "(also dropout=, save= (modules_to_save), bias=, rslora=); task heads train in full. "
        "Checkpoints and the output hold the adapter only (peft format)",
    )
    t.add_argument("--num-workers", type=int, default=0, help="data loading worker processes")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train, _parser=t)

    e = subparsers.add_parser(
        "evaluate",
        help="score a model on a task's data",
        description="Evaluate a model on a data file: prints a metrics table, optionally writes JSON.",
    )
    _add_common(e)
    e.add_argument("--json", help="also write the metrics to this JSON file")
    e.set_defaults(func=cmd_evaluate, _parser=e)


def apply_config_file(
    args: argparse.Namespace, parser: argparse.ArgumentParser | None = None
) -> None:
    """Fill options from `args.config` (YAML or JSON); flags given on the command line win.

    A key the command does not have is an error naming it, so typos are not silently ignored.
    """
    if not args.config:
        return
    path = Path(args.config)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as err:
            raise TrainCLIError(
                f"{path} is YAML but PyYAML is not installed: pip install pyyaml, or use JSON"
            ) from err
        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise TrainCLIError(f"{path} must hold a mapping of option: value")
    defaults = vars(parser.parse_args([])) if parser is not None else {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in vars(args) or name in ("func", "config", "_parser"):
            raise TrainCLIError(
                f"{path}: unknown option {key!r}; use the flag names (e.g. lr, batch-size)"
            )
        if parser is None or getattr(args, name) == defaults.get(
            name
        ):  # not set on the command line
            setattr(args, name, value)


# -- shared pieces ---------------------------------------------------------------------------------
def _require(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{n.replace('_', '-')}" for n in names if not getattr(args, n, None)]
    if missing:
        raise TrainCLIError(f"missing {', '.join(missing)} (on the command line or in --config)")


def load_tokenizer(model: str, from_scratch: bool = False) -> Any:
    """The model folder's tokenizer when it has one, else the shipped GPT-2 tokenizer."""
    from ..tokenizer import GPT2Tokenizer

    folder = Path(model)
    if (
        not from_scratch
        and folder.is_dir()
        and any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json"))
    ):
        return GPT2Tokenizer.from_pretrained(folder)
    return GPT2Tokenizer.from_pretrained("gpt2")


def _data_options(args: argparse.Namespace, task: str) -> dict[str, Any]:
    opts = {name: getattr(args, name) for name in DATA_OPTIONS if getattr(args, name, None)}
    if args.max_length and task != "causal-lm":
        opts["max_length"] = args.max_length
    return opts


def _label_overrides(info: dict[str, Any]) -> dict[str, Any]:
    """Config fields the data decides: label names and count, problem type."""
    out = {}
    for key in ("id2label", "label2id", "num_labels", "problem_type"):
        if info.get(key) is not None:
            out[key] = info[key]
    return out


def _metrics_fn(task: str, info: dict[str, Any]) -> Any:
    if task == "causal-lm":
        return None  # eval loss and perplexity come from the Trainer; full LM logits are too big to keep
    from ..data import as_metric_options
    from ..evaluation import compute_metrics

    return compute_metrics(task, **as_metric_options(info))


def _label_names(id2label: dict[Any, str] | None) -> list[str] | None:
    if not id2label:
        return None
    return [id2label[k] for k in sorted(id2label, key=int)]


def _print_metrics(metrics: dict[str, float], title: str) -> None:
    try:
        from ..evaluation import format_table

        print(format_table(metrics, title=title))
    except ImportError:
        print(title)
        for key, value in metrics.items():
            print(f"  {key:30s} {value:.4f}")


def _fit_lengths(task: str, config: Any, options: dict[str, Any]) -> None:
    """Length defaults that fit the model's `n_positions` (train and evaluate share them).

    `load_task_data`'s own defaults assume GPT-2's 1024 positions (384-token QA windows
    overlapping by 128, rows packing two 128-token texts), which a smaller model cannot run.
    """
    if task == "document-classification":
        return  # the model windows documents itself
    if "max_length" not in options:
        options["max_length"] = min(128 if "classification" in task else 384, config.n_positions)
    if task == "text-classification":
        # the rows the model packs (its config's `pack_length`), never longer than it can read
        default = min(config.n_positions, 2 * options["max_length"])
        options["pack_length"] = int(config.get("pack_length", default))
    elif task == "question-answering":
        # windows overlap by at most a quarter, leaving room for the question
        options["stride"] = min(128, options["max_length"] // 4)


# -- train -----------------------------------------------------------------------------------------
def _model_config(args: argparse.Namespace, tokenizer: Any) -> Any:
    from ..config import GPT2Config

    shape = {k: getattr(args, k) for k in MODEL_SHAPE if getattr(args, k, None)}
    if args.from_scratch:
        if Path(args.model).is_dir():
            config = GPT2Config.from_pretrained(args.model, **shape)
        else:
            config = GPT2Config.from_name(args.model, **shape)
        return config.copy(vocab_size=len(tokenizer)) if hasattr(tokenizer, "__len__") else config
    if shape:
        raise TrainCLIError(
            f"--{'/--'.join(k.replace('_', '-') for k in shape)} change the model's shape: only with --from-scratch"
        )
    return GPT2Config.from_pretrained(args.model)


def _load_data(
    task: str, path: str, tokenizer: Any, options: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    from ..data import load_task_data

    if not Path(path).exists():
        raise TrainCLIError(f"data file {path} does not exist")
    return load_task_data(task, path, tokenizer, **options)


def cmd_train(args: argparse.Namespace) -> int:
    """Run `gpt2kit train`; returns the exit status."""
    from ..models.auto import AutoModelForArchitecture
    from .arguments import TrainingArguments
    from .trainer import Trainer

    apply_config_file(args, getattr(args, "_parser", None))
    _require(args, "task", "model", "train_file", "output_dir")
    task = args.task
    tokenizer = load_tokenizer(args.model, args.from_scratch)
    config = _model_config(args, tokenizer)
    options = _data_options(args, task)
    progress = not args.no_progress

    if task == "causal-lm":
        block = min(args.block_size or args.max_length or config.n_positions, config.n_positions)
        lm = dict(block_size=block, progress=progress)
        split = "all" if args.eval_file else "train"
        train_ds, collator, info = _load_data(
            task,
            args.train_file,
            tokenizer,
            {**lm, "split": split, "validation_fraction": args.validation_fraction},
        )
        if args.eval_file:
            eval_ds, _, eval_info = _load_data(
                task, args.eval_file, tokenizer, {**lm, "split": "all"}
            )
        elif args.validation_fraction > 0:
            eval_ds, _, eval_info = _load_data(
                task,
                args.train_file,
                tokenizer,
                {**lm, "split": "validation", "validation_fraction": args.validation_fraction},
            )
        else:
            eval_ds, eval_info = None, {}
    else:
        _fit_lengths(task, config, options)
        train_ds, collator, info = _load_data(task, args.train_file, tokenizer, dict(options))
        eval_ds, eval_info = None, {}
        if args.eval_file:
            eval_opts = dict(options)
            names = _label_names(info.get("id2label"))
            if names:
                eval_opts["label_names"] = names
            eval_ds, _, eval_info = _load_data(task, args.eval_file, tokenizer, eval_opts)

    overrides = _label_overrides(info)
    if args.from_scratch:
        model = AutoModelForArchitecture.from_config(config.copy(**overrides), task=task)
    else:
        model = AutoModelForArchitecture.for_task(task, args.model, **overrides)
    if args.lora:
        from ..adapters.training import attach_lora

        attach_lora(model, args.lora, task, base=args.model)
    lr = (
        args.lr
        if args.lr is not None
        else (FROM_SCRATCH_LR if args.from_scratch else DEFAULT_LR.get(task, 5e-5))
    )
    weight_decay = args.weight_decay or (0.1 if args.from_scratch else 0.0)
    train_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=lr,
        weight_decay=weight_decay,
        max_grad_norm=args.max_grad_norm or None,
        lr_scheduler_type=args.schedule,
        warmup_steps=args.warmup_steps,
        warmup_ratio=args.warmup_ratio,
        seed=args.seed,
        bf16=args.bf16,
        fp16=args.fp16,
        gradient_checkpointing=args.grad_checkpointing,
        eval_steps=args.eval_steps,
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        metric_for_best_model=args.metric_for_best_model,
        greater_is_better=args.greater_is_better,
        load_best_model_at_end=args.load_best_model_at_end,
        early_stopping_patience=args.early_stopping_patience,
        logging_steps=args.logging_steps,
        max_time_minutes=args.max_minutes,
        dataloader_num_workers=args.num_workers,
        disable_tqdm=not progress,
        device=args.device,
        fsdp=args.fsdp or False,
    )
    trainer = Trainer(
        model,
        train_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator,
        compute_metrics=_metrics_fn(task, eval_info) if eval_ds is not None else None,
        tokenizer=tokenizer,
    )
    resume: Any = None
    if args.resume:
        resume = True if args.resume == "auto" else args.resume
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "training %s (%.1fM parameters) on %d examples",
        type(model).__name__,
        n_params / 1e6,
        len(train_ds),
    )
    result = trainer.train(resume_from_checkpoint=resume)
    if result.interrupted:
        print(
            f"interrupted at step {result.global_step}; checkpoint written. Resume with: --resume (same options)"
        )
        return 130
    trainer.save_model(args.output_dir)
    if args.lora and trainer.is_main:
        print(
            f"wrote the LoRA adapter to {args.output_dir}; a full model: gpt2kit convert "
            f"{args.output_dir} MERGED --merge-adapter"
        )
    if trainer.is_main:
        summary = {
            "train_loss": result.training_loss,
            "steps": result.global_step,
            **result.metrics,
        }
        _print_metrics(summary, title=f"{task}: {args.output_dir}")
        (Path(args.output_dir) / "train_results.json").write_text(
            json.dumps(summary, indent=2) + "\n"
        )
    return 0


# -- evaluate --------------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run `gpt2kit evaluate`; returns the exit status."""
    from ..config import GPT2Config
    from ..models.auto import AutoModelForArchitecture, task_class
    from .arguments import TrainingArguments
    from .trainer import Trainer

    apply_config_file(args, getattr(args, "_parser", None))
    _require(args, "task", "model", "eval_file")
    task = args.task
    tokenizer = load_tokenizer(args.model)
    config = GPT2Config.from_pretrained(args.model)
    options = _data_options(args, task)
    if task == "causal-lm":
        block = min(args.max_length or config.n_positions, config.n_positions)
        options = {"block_size": block, "split": "all", "progress": False}
    else:
        _fit_lengths(task, config, options)
        names = _label_names(config.get("id2label"))
        if names and "classification" in task:
            options["label_names"] = names
    dataset, collator, info = _load_data(task, args.eval_file, tokenizer, options)
    model = (
        task_class(task).from_pretrained(args.model)
        if task
        else AutoModelForArchitecture.from_pretrained(args.model)
    )
    with tempfile.TemporaryDirectory() as scratch:
        trainer_args = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.eval_batch_size,
            bf16=args.bf16,
            fp16=args.fp16,
            device=args.device,
            disable_tqdm=True,
            report_to_tensorboard=False,
        )
        trainer = Trainer(
            model, trainer_args, data_collator=collator, compute_metrics=_metrics_fn(task, info)
        )
        metrics = trainer.evaluate(dataset)
    metrics = {
        k.removeprefix("eval_"): v
        for k, v in metrics.items()
        if not (isinstance(v, float) and math.isnan(v))
    }
    _print_metrics(metrics, title=f"{task}: {args.model} on {args.eval_file}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m gpt2kit train|evaluate ...` without the full `gpt2kit` command."""
    parser = argparse.ArgumentParser(prog="gpt2kit")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
