"""What the examples share: argument parsing and the `gpt2kit train` call.

Each example writes a small generated data set, fine-tunes through the `gpt2kit train`
command (`gpt2kit.cli.main`, the same code path as the shell), and predicts with a
pipeline. Without `--model` they train a tiny GPT-2 from scratch so they run on any CPU in
seconds; `--model gpt2` fine-tunes the real one (downloaded from the Hub).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from gpt2kit.cli import main as gpt2kit

TINY = ["--model", "gpt2", "--from-scratch", "--n-layer", "2", "--n-embd", "64", "--n-head", "2"]


def parse(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a few training steps: checks the plumbing")
    p.add_argument(
        "--model", default=None, help="fine-tune this checkpoint instead of a tiny new model"
    )
    p.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    args = p.parse_args()
    args.work = Path(args.out or tempfile.mkdtemp(prefix="gpt2kit-example-"))
    args.work.mkdir(parents=True, exist_ok=True)
    return args


def train(
    args: argparse.Namespace,
    task: str,
    train_file: Path,
    steps: int,
    *extra: str,
    positions: int = 128,
) -> Path:
    """Run `gpt2kit train`; returns the trained model's folder."""
    model = ["--model", args.model] if args.model else [*TINY, "--n-positions", str(positions)]
    out = args.work / "model"
    code = gpt2kit(
        ["train", "--task", task, *model, "--train-file", str(train_file), "--output-dir", str(out),
         "--max-steps", "3" if args.quick else str(steps), "--batch-size", "16", "--lr", "1e-3",
         "--no-progress", *extra]
    )  # fmt: skip
    if code != 0:
        raise SystemExit(code)
    return out
