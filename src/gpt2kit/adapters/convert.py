"""Adapter folders as models: `from_pretrained(adapter_folder)` and
`gpt2kit convert --merge-adapter`.

A `peft` folder names its base (`base_model_name_or_path` in `adapter_config.json`) but
not the head it was trained with: the number of labels, their names and a task's options
are in no `peft` field. gpt2kit's `save_pretrained` on a model with adapters therefore
also writes the model's `config.json` beside the adapter files (`peft` and `transformers`
ignore it); a folder without one takes the base model's config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import ADAPTER_CONFIG, LoraConfig
from .inject import AdapterError, is_adapter_folder

_MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def base_of_adapter_folder(path: str | os.PathLike, config: Any) -> tuple[Path | None, Any, Any]:
    """For an adapter folder without model weights: `(folder, base path, config)`, the
    config being the folder's `config.json` when it has one (the trained head's labels)
    unless `config` is given; anything else comes back as `(None, path, config)`."""
    if not is_adapter_folder(path) or any((Path(path) / f).is_file() for f in _MODEL_WEIGHTS):
        return None, path, config
    folder = Path(path)
    base = LoraConfig.from_pretrained(folder).base_model_name_or_path
    if not base:
        raise AdapterError(
            f"{folder / ADAPTER_CONFIG} does not name its base model (base_model_name_or_path); "
            "load the base with from_pretrained(BASE) and then model.load_adapter(folder)"
        )
    if Path(base).resolve() == folder.resolve():
        raise AdapterError(f"{folder / ADAPTER_CONFIG}: base_model_name_or_path points at itself")
    if config is None and (folder / "config.json").is_file():
        from ..config import GPT2Config

        config = GPT2Config.from_json_file(folder / "config.json")
    return folder, base, config


def merged_model(source: str, adapter: str | None) -> tuple[Any, str]:
    """The model for `gpt2kit convert SOURCE DEST --merge-adapter [ADAPTER]`, merged and
    plain, and where its tokenizer comes from. Without `ADAPTER`, `SOURCE` is the adapter
    folder (its base from `adapter_config.json`); with it, `SOURCE` is the base."""
    from ..models.auto import AutoModelForArchitecture

    folder = Path(adapter if adapter else source)
    if not is_adapter_folder(folder):
        raise AdapterError(f"{folder} is not an adapter folder (no {ADAPTER_CONFIG})")
    if adapter:
        model = AutoModelForArchitecture.from_pretrained(source, dtype="auto")
        model.load_adapter(folder)
    elif (folder / "config.json").is_file():
        model = AutoModelForArchitecture.from_pretrained(folder, dtype="auto")
    else:
        _, base, _ = base_of_adapter_folder(folder, None)
        model = AutoModelForArchitecture.from_pretrained(base, dtype="auto")
        model.load_adapter(folder)
    model.merge_and_unload()
    tokenizer_source = str(folder) if any(folder.glob("*.json")) else source
    return model, tokenizer_source
