"""Where a model and its tokenizer come from: the one resolver the pipelines, the trainer's
CLI and the server share.

Before this module the pipelines, `gpt2kit train` and `gpt2kit serve` each had their own
tokenizer resolver (three sets of fallback rules) and two of them their own copy of the
embedded model's path. The rules, now in one place:

- a tokenizer object is used as is; a string is a folder or Hub id to load one from;
- with none, the model's folder supplies it when it holds tokenizer files, a Hub id its own
  files when they can be had, and otherwise the GPT-2 tokenizer shipped with gpt2kit does
  (every GPT-2 checkpoint shares that vocabulary); a model trained from scratch always
  gets the shipped one.

Layer: above `models` (it loads through the Auto classes), below pipelines, training and
serve, which import it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .config import GPT2Config
from .models.auto import AutoModelForArchitecture, architecture_class, task_class
from .tokenizer import GPT2Tokenizer

logger = logging.getLogger("gpt2kit")

# The small GPT-2 trained on Tiny Shakespeare that ships inside the package (its model card
# is the README.md beside the weights). Used when a generative pipeline or the server gets
# no model.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default_model"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def default_model_path() -> Path:
    """The folder of the embedded default model.

    Example:
        >>> default_model_path().name
        'default_model'
    """
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"the embedded default model is missing from {DEFAULT_MODEL_DIR}; reinstall gpt2kit "
            "or pass model=PATH_OR_HUB_ID"
        )
    return DEFAULT_MODEL_DIR


def load_tokenizer(
    tokenizer: Any, source: str | os.PathLike | None, *, from_scratch: bool = False
) -> Any:
    """The tokenizer object to use for the model at `source` (see the module rules).

    Example:
        >>> load_tokenizer(None, None).vocab_size
        50257
    """
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    if tokenizer is not None:
        return GPT2Tokenizer.from_pretrained(tokenizer)
    if source is not None and not from_scratch:
        folder = Path(source)
        if folder.is_dir():
            if any((folder / name).is_file() for name in TOKENIZER_FILES):
                return GPT2Tokenizer.from_pretrained(folder)
        else:  # a Hub id: its own tokenizer files if they can be had, else GPT-2's
            try:
                return GPT2Tokenizer.from_pretrained(str(source))
            except Exception as err:  # noqa: BLE001 - any failure falls back to the shipped vocab
                logger.info(
                    "no tokenizer for %s (%s); using the shipped GPT-2 tokenizer", source, err
                )
    return GPT2Tokenizer.from_pretrained("gpt2")


def checkpoint_class(source: str | os.PathLike) -> type:
    """The gpt2kit class the checkpoint at `source` (a folder or Hub id) was saved as: the
    one its `config.json`'s `architectures` names (`AutoModelForArchitecture`'s rule), read
    without the weights, so a caller can refuse a checkpoint before loading it."""
    return architecture_class(GPT2Config.from_pretrained(source))


def load_model(
    source: str | os.PathLike,
    model_class: type | None = None,
    *,
    task: str | None = None,
    device: Any = None,
    dtype: Any = None,
    quantization: Any = None,
    **kwargs: Any,
) -> Any:
    """The model at `source` (a folder or Hub id) as `model_class`; without one, as the
    class of `task` in the task registry (a head the checkpoint lacks is newly initialized),
    else as the class its `config.json` names (`checkpoint_class`). `device`, `dtype`,
    `quantization` (`"int8"` / `"int4"`, docs/quantization.md) and `kwargs` (config
    overrides, Hub options) go to the class's `from_pretrained`."""
    if model_class is None and task is not None:
        model_class = task_class(task)
    # (AutoModelForArchitecture reads config.json with the Hub options in `kwargs`)
    load = AutoModelForArchitecture if model_class is None else model_class
    return load.from_pretrained(
        source, device=device, dtype=dtype, quantization=quantization, **kwargs
    )


def load_model_and_tokenizer(
    model: Any, tokenizer: Any = None, device: str | None = None, quantization: Any = None
) -> tuple[Any, Any, str]:
    """`(model in eval mode, tokenizer, name)` from a model object or a folder / Hub id
    (None: the embedded default model, named `"default"`). A path loads as the class its
    `config.json` names (`load_model`), weight-only quantized when
    `quantization` is given (`"int8"` / `"int4"`: docs/quantization.md)."""
    if model is None:
        if not DEFAULT_MODEL_DIR.is_dir():
            raise FileNotFoundError(
                f"no --model given and no default model at {DEFAULT_MODEL_DIR}; pass --model PATH_OR_ID"
            )
        model = str(DEFAULT_MODEL_DIR)
    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        obj = load_model(name, device=device or None, quantization=quantization)
        tokenizer = load_tokenizer(tokenizer, name)
        model_name = "default" if Path(name).resolve() == DEFAULT_MODEL_DIR else name
    else:
        obj = model
        tokenizer = load_tokenizer(tokenizer, None)
        model_name = getattr(obj.config, "name_or_path", None) or type(obj).__name__
    return obj.eval(), tokenizer, str(model_name)


__all__ = [
    "DEFAULT_MODEL_DIR",
    "TOKENIZER_FILES",
    "checkpoint_class",
    "default_model_path",
    "load_model",
    "load_model_and_tokenizer",
    "load_tokenizer",
]
