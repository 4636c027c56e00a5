"""`AdapterMixin`: `transformers`' PEFT-integration methods on every gpt2kit model.

`GPT2PreTrainedModel` inherits it, so every head has `add_adapter`, `load_adapter`,
`set_adapter`, `disable_adapters` / `enable_adapters`, `active_adapters`,
`merge_adapter` / `unmerge_adapter`, `delete_adapter`, `get_adapter_state_dict`, plus
`peft`'s `merge_and_unload` / `unload`. The work is in `gpt2kit.adapters.inject`; the
methods only check arguments, so the model classes stay free of adapter code.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from . import inject
from .config import LoraConfig

# `transformers.load_adapter` keywords accepted for scripts, with no effect here
_IGNORED_LOAD_KWARGS = frozenset(
    {"low_cpu_mem_usage", "device_map", "offload_folder", "offload_index"}
)
_HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download")


class AdapterMixin:
    """LoRA adapters in the `peft` format (see `docs/adapters.md`)."""

    # -- what transformers' code reads --------------------------------------------------------
    @property
    def peft_config(self) -> dict[str, LoraConfig]:
        """The adapters by name (`transformers`' attribute)."""
        return inject.configs(self)  # type: ignore[arg-type]

    @property
    def _hf_peft_config_loaded(self) -> bool:
        return bool(inject.configs(self))  # type: ignore[arg-type]

    @property
    def has_adapters(self) -> bool:
        """Whether any adapter is attached."""
        return bool(inject.configs(self))  # type: ignore[arg-type]

    # -- transformers' methods ----------------------------------------------------------------
    def add_adapter(self, adapter_config: Any, adapter_name: str | None = None) -> None:
        """Add a new, trainable adapter from a `gpt2kit.LoraConfig` (or a `peft.LoraConfig`)
        and make it the active one. Every other parameter is frozen, so an optimizer built
        afterwards over `requires_grad` parameters trains the adapter only."""
        config = LoraConfig.coerce(adapter_config)
        config = LoraConfig(**{**config.__dict__})  # (the model keeps its own copy)
        if config.base_model_name_or_path is None:
            config.base_model_name_or_path = self.__dict__.get("name_or_path")
        name = adapter_name or "default"
        inject.add(self, config, name, trainable=True)  # type: ignore[arg-type]
        inject.set_active(self, name)  # type: ignore[arg-type]

    def load_adapter(
        self,
        peft_model_id: str | os.PathLike | None = None,
        adapter_name: str | None = None,
        peft_config: dict[str, Any] | Any = None,
        adapter_state_dict: dict[str, torch.Tensor] | None = None,
        is_trainable: bool = False,
        hotswap: bool | str = "auto",
        adapter_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Load an adapter folder `peft` wrote (`adapter_config.json` +
        `adapter_model.safetensors`, a local folder or a Hub id), or `peft_config` +
        `adapter_state_dict`. The first adapter becomes active; later ones are added
        inactive (`set_adapter` picks). `is_trainable=False` (the default, as in
        `transformers`) loads it frozen.
        """
        from ..models.base import UnsupportedArgumentError

        if hotswap is True:
            raise UnsupportedArgumentError(
                "load_adapter(hotswap=True) is not supported; delete_adapter(name) and load again"
            )
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        unknown = [k for k in kwargs if k not in _IGNORED_LOAD_KWARGS]
        if adapter_kwargs:
            unknown += [k for k in adapter_kwargs if k not in _HUB_KWARGS]
            hub.update({k: v for k, v in adapter_kwargs.items() if k in _HUB_KWARGS})
        if unknown:
            raise UnsupportedArgumentError(
                f"load_adapter got unsupported keyword(s) {', '.join(map(repr, unknown))}; it takes "
                "peft_model_id, adapter_name, peft_config, adapter_state_dict, is_trainable and "
                "the Hub options revision, token, cache_dir, local_files_only, force_download"
            )
        if peft_model_id is None and (peft_config is None or adapter_state_dict is None):
            raise ValueError(
                "load_adapter needs a folder (peft_model_id) or both peft_config and adapter_state_dict"
            )
        inject.load(
            self,  # type: ignore[arg-type]
            peft_model_id or "",
            adapter_name or "default",
            trainable=is_trainable,
            config=peft_config,
            state=adapter_state_dict,
            **hub,
        )

    def set_adapter(self, adapter_name: str | list[str]) -> None:
        """Make these adapters the active ones (several: their updates add up)."""
        inject.set_active(self, adapter_name)  # type: ignore[arg-type]

    def active_adapters(self) -> list[str]:
        """Names of the active adapters."""
        inject._require(self)  # type: ignore[arg-type]
        return list(inject.active(self))  # type: ignore[arg-type]

    def disable_adapters(self) -> None:
        """Run the base model alone (merged adapters are unmerged first)."""
        inject.set_disabled(self, True)  # type: ignore[arg-type]

    def enable_adapters(self) -> None:
        inject.set_disabled(self, False)  # type: ignore[arg-type]

    def merge_adapter(self, adapter_names: list[str] | None = None) -> None:
        """Add the adapters' updates (default: the active ones) into the base weights, in
        place; `unmerge_adapter` subtracts them again (equal up to rounding)."""
        inject.merge(self, adapter_names)  # type: ignore[arg-type]

    def unmerge_adapter(self) -> None:
        inject.unmerge(self)  # type: ignore[arg-type]

    def delete_adapter(self, adapter_names: str | list[str]) -> None:
        """Remove adapters; when none is left, the model is the plain model again."""
        inject.delete(self, adapter_names)  # type: ignore[arg-type]

    def get_adapter_state_dict(
        self, adapter_name: str | None = None, state_dict: dict | None = None
    ) -> dict[str, torch.Tensor]:
        """The adapter's tensors under `transformers`' key names (no `base_model.model.`)."""
        if state_dict is not None:
            from ..models.base import UnsupportedArgumentError

            raise UnsupportedArgumentError(
                "get_adapter_state_dict(state_dict=...) is not supported; it reads the model's own tensors"
            )
        return inject.adapter_state_dict(self, adapter_name)  # type: ignore[arg-type]

    # -- peft's PeftModel methods -------------------------------------------------------------
    def merge_and_unload(self, adapter_names: list[str] | None = None) -> Any:
        """Merge the adapters (default: the active ones) and remove all adapters; returns
        the model, now a plain one that saves as a full checkpoint."""
        return inject.merge_and_unload(self, adapter_names)  # type: ignore[arg-type]

    def unload(self) -> Any:
        """Remove all adapters without merging; returns the base model."""
        return inject.unload(self)  # type: ignore[arg-type]
