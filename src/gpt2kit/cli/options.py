"""Options every `gpt2kit` subcommand spells the same way, defined once.

`--device` had three definitions with two defaults (CPU for the inference commands and the
server, CUDA-when-available for `train`/`evaluate`); it now has one: CUDA when available,
else CPU, for every subcommand.
"""

from __future__ import annotations

import argparse

DEVICE_HELP = "torch device: cpu, cuda, cuda:1 (default: CUDA when available, else CPU)"


def add_device_option(p: argparse.ArgumentParser) -> None:
    """Add `--device` (default None: `resolve_device` picks CUDA when available)."""
    p.add_argument("--device", default=None, help=DEVICE_HELP)


def resolve_device(device: str | None) -> str:
    """`--device` as given, else `"cuda"` when a GPU is visible, else `"cpu"`.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    if device:
        return device
    import torch  # here, not at the top: `gpt2kit --help` does not import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
