"""LoRA adapters in the `peft` format, both ways, on every gpt2kit model.

- `config.py`: `LoraConfig` (`peft`'s field names) and `adapter_config.json`;
- `layers.py`: `LoraLinear` and `ModulesToSave`, the modules an adapter puts in a model;
- `inject.py`: adding, activating, merging, deleting adapters; their files;
- `mixin.py`: `AdapterMixin`, `transformers`' PEFT-integration methods, inherited by
  `GPT2PreTrainedModel`.

See `docs/adapters.md` for the design and what is not supported.
"""

from .config import ADAPTER_CONFIG, AdapterConfigError, LoraConfig, parse_lora_spec
from .inject import (
    ADAPTER_WEIGHTS,
    AdapterError,
    adapter_state_dict,
    is_adapter_folder,
    load_state,
    merge_and_unload,
)
from .inject import load_checkpoint as load_adapter_checkpoint
from .inject import save as save_adapter
from .layers import BASE, LoraLinear, ModulesToSave, mixed_batch
from .mixin import AdapterMixin

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "BASE",
    "AdapterConfigError",
    "AdapterError",
    "AdapterMixin",
    "LoraConfig",
    "LoraLinear",
    "ModulesToSave",
    "adapter_state_dict",
    "is_adapter_folder",
    "load_adapter_checkpoint",
    "load_state",
    "merge_and_unload",
    "mixed_batch",
    "parse_lora_spec",
    "save_adapter",
]
