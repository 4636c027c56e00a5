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

The commands import torch, the models and the data modules inside their functions, so
`gpt2kit --help` (which registers these subcommands) stays fast; none of those imports
avoids a cycle (tests/test_architecture.py checks the layers).
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

from ..tasks import registry
from .options import add_device_option

logger = logging.getLogger("gpt2kit")

# the trainable tasks of the task registry (`gpt2kit.tasks.registry`)
TASKS = tuple(registry.names(reader=True))
# fine-tuning learning rates that work for GPT-2 small on each kind of task; from scratch
# a model wants a much larger one
DEFAULT_LR = {
    t.name: t.defaults["learning_rate"] for t in registry.TASKS if "learning_rate" in t.defaults
}
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
LABELLED = tuple(t.name for t in registry.TASKS if t.defaults.get("labelled"))


class TrainCLIError(ValueError):
    """A bad command line or config file; the message says what to change."""


def _names(value: Any) -> list[str]:
    """`--label-names O,B-PER,I-PER` (or a list from a config file) as a list of names."""
    names = [str(v).strip() for v in value] if isinstance(value, list) else str(value).split(",")
    names = [n.strip() for n in names if n.strip()]
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"label names {value!r}: give distinct names, comma-separated (O,B-PER,I-PER)"
        )
    return names


TRAIN_EXAMPLES = """examples:
  # a tiny model from scratch (no download): SST-2's GLUE TSV (sentence, label columns)
  gpt2kit train --task sequence-classification --model gpt2 --from-scratch --n-layer 2 \\
      --n-embd 64 --n-head 2 --train-file SST-2/train.tsv --eval-file SST-2/dev.tsv \\
      --output-dir sst2 --epochs 1 --seed 0
  # CoNLL-2003 as distributed (IOB1, -DOCSTART- lines), every tag named
  gpt2kit train --task token-classification --model ./gpt2 --train-file eng.train \\
      --eval-file eng.testa --output-dir ner --label-names O,B-PER,I-PER,B-LOC,I-LOC,B-ORG,I-ORG,B-MISC,I-MISC
  gpt2kit train --task question-answering --model ./gpt2 --train-file train-v1.1.json \\
      --eval-file dev-v1.1.json --output-dir squad --epochs 2 --lr 3e-5 --max-minutes 60
  gpt2kit train --task causal-lm --model gpt2 --from-scratch --n-layer 4 --n-embd 256 \\
      --n-head 4 --train-file corpus.txt --output-dir lm --max-steps 2000 --block-size 256
  gpt2kit train --config run.yaml        # the same keys as the flags (dashes or underscores)
  torchrun --standalone --nproc-per-node 8 -m gpt2kit train ... --fsdp
See docs/data-formats.md for every task's files and docs/cli.md for more."""

EVALUATE_EXAMPLES = """examples:
  gpt2kit evaluate --task sequence-classification --model sst2 --eval-file SST-2/dev.tsv \\
      --json metrics.json --predictions dev.labels          # one label per line
  gpt2kit evaluate --task token-classification --model ner --eval-file eng.testb \\
      --predictions testb.conll     # 'word gold pred' lines: perl conlleval < testb.conll
  gpt2kit evaluate --task question-answering --model squad --eval-file dev-v1.1.json \\
      --predictions predictions.json  # python evaluate-v1.1.py dev-v1.1.json predictions.json
  gpt2kit evaluate --task causal-lm --model lm --eval-file test.txt --block-size 1024 --stride 512
  gpt2kit evaluate --task causal-lm --model lm --eval-file test.txt --quantize int8   # vs fp32
See docs/cli.md for what each task reports."""


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
    p.add_argument(
        "--label-names",
        type=_names,
        help="labels/tags in id order, comma-separated (config: a list); default: those the "
        "data holds (train: the training and eval files together)",
    )
    p.add_argument(
        "--stride",
        type=int,
        help="tokens shared by consecutive windows of a long sentence (token-classification, "
        "default max-length/2) or context (question-answering, default max-length/4); causal-lm "
        "evaluate: the step between perplexity windows (default: --block-size)",
    )
    p.add_argument(
        "--max-answer-length",
        type=int,
        help="question-answering: longest answer in tokens (default 30, as gpt2kit answer)",
    )
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU or GPU)")
    p.add_argument(
        "--fp16", action="store_true", help="float16 autocast with loss scaling (CUDA only)"
    )
    add_device_option(p)
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
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    t.add_argument(
        "--quantize",
        choices=["int8", "int4"],
        default=None,
        help="with --lora: load the base weight-only quantized and frozen and train the adapter "
        "on it (QLoRA-style; docs/adapters.md). The output is the adapter alone, for the float "
        "or the quantized base",
    )
    t.add_argument("--num-workers", type=int, default=0, help="data loading worker processes")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train, _parser=t)

    e = subparsers.add_parser(
        "evaluate",
        help="score a model on a task's data",
        description="Evaluate a model on a data file: prints a metrics table, optionally writes "
        "JSON and per-example predictions. Every example is scored whole (long sentences and "
        "contexts in windows).",
        epilog=EVALUATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(e)
    e.add_argument("--json", help="also write the metrics to this JSON file")
    e.add_argument(
        "--predictions",
        help="write per-example predictions in the official scorer's input format: SQuAD "
        "predictions.json (question id -> answer), conlleval 'word gold pred' lines, one label "
        "per line (classification, multiple-choice), one generated text per line (seq2seq)",
    )
    e.add_argument(
        "--block-size",
        type=int,
        help="causal-lm: tokens per perplexity window (default: the training block size, "
        "else n_positions)",
    )
    e.add_argument(
        "--max-new-tokens",
        type=int,
        default=64,
        help="seq2seq --predictions: longest generated text (64)",
    )
    e.add_argument(
        "--quantize",
        default=None,
        choices=["int8", "int4"],
        help="weight-only quantization at load, as `generate --quantize`: measures what "
        "quantizing costs in quality (docs/quantization.md)",
    )
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
    """The tokenizer for `--model` (`gpt2kit.loading.load_tokenizer`'s rules)."""
    from ..loading import load_tokenizer as resolve  # in the command: --help stays torch-free

    return resolve(None, model, from_scratch=from_scratch)


def _data_options(args: argparse.Namespace, task: str) -> dict[str, Any]:
    opts = {name: getattr(args, name) for name in DATA_OPTIONS if getattr(args, name, None)}
    if args.max_length and task != "causal-lm":
        opts["max_length"] = args.max_length
    if getattr(args, "label_names", None):
        if task not in LABELLED:
            raise TrainCLIError(f"--label-names applies to {', '.join(LABELLED)}, not {task}")
        opts["label_names"] = _names(args.label_names)
    if getattr(args, "stride", None) is not None and task != "causal-lm":
        if task not in ("token-classification", "question-answering"):
            raise TrainCLIError(
                f"--stride applies to token-classification, question-answering and causal-lm "
                f"evaluate, not {task}"
            )
        opts["stride"] = args.stride
    if getattr(args, "max_answer_length", None) is not None:
        if task != "question-answering":
            raise TrainCLIError(f"--max-answer-length applies to question-answering, not {task}")
        opts["max_answer_length"] = args.max_answer_length
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
        # windows overlap by at most a quarter, leaving room for the question (the same
        # windows as `gpt2kit answer` and the question-answering pipeline)
        options.setdefault("stride", min(128, options["max_length"] // 4))
        options["max_question_length"] = min(64, options["max_length"] // 4)


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
    from ..loading import load_model
    from ..models.auto import AutoModelForArchitecture
    from ..training.arguments import TrainingArguments
    from ..training.trainer import Trainer

    apply_config_file(args, getattr(args, "_parser", None))
    _require(args, "task", "model", "train_file", "output_dir")
    from ..training.arguments import check_cli_options

    check_cli_options(args)  # out-of-range numbers fail before any data or model is read
    task = args.task
    quantize = getattr(args, "quantize", None)
    if quantize and not args.lora:
        raise TrainCLIError(
            f"--quantize {quantize} trains a LoRA adapter on a frozen quantized base (QLoRA): add "
            "--lora (e.g. --lora r=8,alpha=16,targets=c_attn,c_proj,c_fc); training every weight "
            "needs float weights"
        )
    if quantize and args.from_scratch:
        raise TrainCLIError("--quantize with --from-scratch: a quantized base must be pretrained")
    tokenizer = load_tokenizer(args.model, args.from_scratch)
    config = _model_config(args, tokenizer)
    options = _data_options(args, task)
    progress = not args.no_progress

    if args.stride is not None and task == "causal-lm":
        raise TrainCLIError("--stride with causal-lm is for evaluate (perplexity windows)")
    block = None
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
        # evaluation windows as `gpt2kit evaluate` scores them (blocks of `block`, the last
        # one reaching the end), so the tail of the file is scored and the two agree
        windows = {**lm, "window_stride": block}
        if args.eval_file:
            eval_ds, _, eval_info = _load_data(
                task, args.eval_file, tokenizer, {**windows, "split": "all"}
            )
        elif args.validation_fraction > 0:
            eval_ds, _, eval_info = _load_data(
                task,
                args.train_file,
                tokenizer,
                {**windows, "split": "validation", "validation_fraction": args.validation_fraction},
            )
        else:
            eval_ds, eval_info = None, {}
    else:
        _fit_lengths(task, config, options)
        if task == "token-classification" and args.eval_file and "label_names" not in options:
            # a tag only the eval file has is still a label (not a fatal surprise)
            from ..data.datasets import token_label_names

            reader = {k: v for k, v in options.items() if k in ("word_column", "tag_column")}
            for path in (args.train_file, args.eval_file):
                if not Path(path).exists():
                    raise TrainCLIError(f"data file {path} does not exist")
            options["label_names"] = token_label_names(args.train_file, args.eval_file, **reader)
        train_ds, collator, info = _load_data(task, args.train_file, tokenizer, dict(options))
        eval_ds, eval_info = None, {}
        if args.eval_file:
            eval_opts = dict(options)
            names = _label_names(info.get("id2label"))
            if names:
                eval_opts["label_names"] = names
            eval_ds, _, eval_info = _load_data(task, args.eval_file, tokenizer, eval_opts)

    overrides = _label_overrides(info)
    if task != "causal-lm" and tokenizer.pad_token_id is not None:
        # transformers' GPT2ForSequenceClassification finds each row's last token with it: a
        # classifier saved without one fails on any batch larger than 1 there
        overrides["pad_token_id"] = tokenizer.pad_token_id
    # --seed decides the new head's (or the whole model's) initialization too, so two runs
    # with one seed are the same run
    from ..training.trainer import set_seed

    set_seed(args.seed)
    if args.from_scratch:
        model = AutoModelForArchitecture.from_config(config.copy(**overrides), task=task)
    else:
        model = load_model(args.model, task=task, quantization=quantize, **overrides)
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
        if block is not None:
            summary["block_size"] = block  # `gpt2kit evaluate` windows perplexity with it
        _print_metrics(summary, title=f"{task}: {args.output_dir}")
        (Path(args.output_dir) / "train_results.json").write_text(
            json.dumps(summary, indent=2) + "\n"
        )
    return 0


# -- evaluate --------------------------------------------------------------------------------------
def _training_block_size(model: str) -> int | None:
    """The block size `gpt2kit train` used (its train_results.json), if the folder has one."""
    path = Path(model) / "train_results.json"
    if path.is_file():
        try:
            value = json.loads(path.read_text()).get("block_size")
        except (ValueError, AttributeError):
            return None
        return int(value) if value else None
    return None


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run `gpt2kit evaluate`; returns the exit status."""
    from ..config import GPT2Config
    from ..loading import load_model
    from ..training.arguments import TrainingArguments
    from ..training.trainer import Trainer

    apply_config_file(args, getattr(args, "_parser", None))
    _require(args, "task", "model", "eval_file")
    task = args.task
    if task == "causal-lm" and args.predictions:
        raise TrainCLIError(
            "--predictions: causal-lm has no per-example predictions (it reports perplexity)"
        )
    tokenizer = load_tokenizer(args.model)
    config = GPT2Config.from_pretrained(args.model)
    options = _data_options(args, task)
    method = None
    if task == "causal-lm":
        trained = _training_block_size(args.model)
        block = args.block_size or args.max_length or trained or config.n_positions
        if block > config.n_positions:
            raise TrainCLIError(
                f"--block-size {block} exceeds the model's n_positions ({config.n_positions})"
            )
        stride = args.stride or block
        if not 0 < stride <= block:
            raise TrainCLIError(f"--stride {stride}: use 1..--block-size ({block})")
        source = (
            "--block-size"
            if args.block_size or args.max_length
            else "training block size"
            if trained
            else "n_positions"
        )
        method = (
            f"perplexity: sliding window, block {block} ({source}), stride {stride}: every token "
            f"scored once, with at least {block - stride} tokens of context after the first window"
            if stride < block
            else f"perplexity: non-overlapping blocks of {block} tokens ({source}); a block's "
            "first token has no context (pass --stride < --block-size for a sliding window)"
        )
        options = {"block_size": block, "split": "all", "progress": False, "window_stride": stride}
    else:
        if args.block_size:
            raise TrainCLIError("--block-size applies to causal-lm")
        _fit_lengths(task, config, options)
        names = _label_names(config.get("id2label"))
        if names and "classification" in task and "label_names" not in options:
            options["label_names"] = names
        if task == "token-classification":
            options["unknown_tags"] = "score"  # gold tags the model lacks still count
    dataset, collator, info = _load_data(task, args.eval_file, tokenizer, options)
    model = load_model(args.model, task=task or None, quantization=getattr(args, "quantize", None))
    metric_fn = _metrics_fn(task, info)
    captured: dict[str, Any] = {}
    if metric_fn is not None and args.predictions:
        inner = metric_fn

        def metric_fn(prediction: Any) -> dict[str, float]:  # keep what the model predicted
            captured["prediction"] = prediction
            return inner(prediction)

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
        trainer = Trainer(model, trainer_args, data_collator=collator, compute_metrics=metric_fn)
        metrics = trainer.evaluate(dataset)
    metrics = {
        k.removeprefix("eval_"): v
        for k, v in metrics.items()
        if not (isinstance(v, float) and math.isnan(v))
    }
    if task == "causal-lm":
        metrics.update(block_size=options["block_size"], stride=options["window_stride"])
        metrics["scored_tokens"] = max(0, info["num_tokens"] - 1)
        print(method)
    _print_metrics(metrics, title=f"{task}: {args.model} on {args.eval_file}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if args.predictions:
        from ..evaluation.predictions import write_predictions

        count = write_predictions(
            args.predictions,
            task,
            captured.get("prediction"),
            info,
            model=model,
            tokenizer=tokenizer,
            dataset=dataset,
            batch_size=args.eval_batch_size or args.batch_size,
            max_new_tokens=args.max_new_tokens,
        )
        print(f"wrote {count} predictions to {args.predictions}")
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
