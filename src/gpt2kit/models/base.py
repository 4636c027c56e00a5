"""`GPT2PreTrainedModel`: what every gpt2kit model shares (config, init, save/load entry points).

File formats are not handled here: `from_pretrained`/`save_pretrained` hand the module to
`gpt2kit.checkpoint`, which owns key names, the Conv1D transpose, tied weights and shards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..config import GPT2Config

M = TypeVar("M", bound="GPT2PreTrainedModel")


class GPT2PreTrainedModel(nn.Module):
    """Base of every gpt2kit model.

    Class attributes a subclass may set:
        base_model_prefix: attribute (and checkpoint key prefix) of the `GPT2Model` inside a
            task model; `""` for `GPT2Model` itself.
        hf_architecture: the name written to `config.json`'s `architectures`; defaults to
            the class name (aliases such as `GPT2ForCausalLM` write `GPT2LMHeadModel` so
            `transformers` and vLLM pick the right class).
        task: the pipeline task name this head serves (used by `AutoModel.for_task`).

    A plain PyTorch module: CPU decoding's kernels, weight copies and packed weights belong
    to `gpt2kit.decode`, which `generate` and the server build around the model.
    """

    base_model_prefix = "transformer"
    hf_architecture: str | None = None
    task: str | None = None

    def __init__(self, config: GPT2Config):
        super().__init__()
        if not isinstance(config, GPT2Config):
            raise TypeError(
                f"config must be a gpt2kit.GPT2Config, got {type(config).__name__}; "
                "build one with GPT2Config(...) or GPT2Config.from_pretrained(path)"
            )
        self.config = config

    # -- initialization -----------------------------------------------------------------------
    def _init_module(self, module: nn.Module) -> None:
        """GPT-2's initialization for one module (normal(0, initializer_range), zero biases)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        """Initialize every submodule not already owned by an initialized backbone, then tie."""
        for child in self.children():
            if not isinstance(child, GPT2PreTrainedModel):
                child.apply(self._init_module)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share `lm_head.weight` with the token embedding when the config ties them."""
        lm_head = getattr(self, "lm_head", None)
        if isinstance(lm_head, nn.Linear) and self.config.tie_word_embeddings:
            lm_head.weight = self.get_input_embeddings().weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.wte

    @property
    def backbone(self) -> nn.Module:
        """The `GPT2Model` this model is built on."""
        return getattr(self, self.base_model_prefix) if self.base_model_prefix else self

    # -- conveniences -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameter count, tied weights counted once."""
        seen = {id(p): p for p in self.parameters()}
        n = sum(p.numel() for p in seen.values())
        if exclude_embeddings:
            emb = self.get_input_embeddings().weight.numel() + self.backbone.wpe.weight.numel()
            n -= emb
        return n

    def gradient_checkpointing_enable(self) -> None:
        """Recompute block activations in the backward pass: less memory, ~30% more compute."""
        self.backbone.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.backbone.gradient_checkpointing = False

    def resize_token_embeddings(self, new_size: int) -> nn.Embedding:
        """Grow or shrink the vocabulary (new rows initialized), keeping a tied head tied."""
        old = self.get_input_embeddings()
        if new_size == old.num_embeddings:
            return old
        new = nn.Embedding(
            new_size, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype
        )
        self._init_module(new)
        n = min(new_size, old.num_embeddings)
        with torch.no_grad():
            new.weight[:n] = old.weight[:n]
        self.backbone.wte = new
        self.config.vocab_size = new_size
        self.tie_weights()
        return new

    # -- checkpoints --------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls: type[M],
        name_or_path: str | os.PathLike,
        *,
        config: GPT2Config | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        ignore_mismatched_sizes: bool = False,
        ignore_unexpected_keys: bool = False,
        output_loading_info: bool = False,
        **config_overrides: Any,
    ) -> M:
        """Load a Hugging Face GPT-2 checkpoint: a local folder or a Hub id.

        Args:
            name_or_path: folder with `config.json` and weights (`model.safetensors`,
                sharded safetensors with index, or `pytorch_model.bin`), or a Hub id.
            config: use this config instead of the folder's `config.json`.
            dtype: e.g. `torch.bfloat16`; `"auto"` keeps the checkpoint's dtype; default fp32.
            device: where the weights go (they are read straight there).
            ignore_mismatched_sizes: re-initialize weights whose shapes differ instead of failing.
            ignore_unexpected_keys: drop unknown backbone keys instead of failing.
            output_loading_info: also return a `LoadReport` (missing/unexpected/new keys).
            **config_overrides: changed config fields, e.g. `num_labels=3`.

        Example:
            >>> model = GPT2LMHeadModel.from_pretrained("path/to/gpt2")  # doctest: +SKIP
        """
        from ..checkpoint import load_model

        model, report = load_model(
            cls,
            name_or_path,
            config=config,
            dtype=dtype,
            device=device,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            ignore_unexpected_keys=ignore_unexpected_keys,
            config_overrides=config_overrides,
        )
        return (model, report) if output_loading_info else model  # type: ignore[return-value]

    def complete_loading(self, report: Any) -> None:
        """Called by the checkpoint loader after the weights are in, before it logs `report`
        (a `gpt2kit.checkpoint.LoadReport`): a model that derives new weights from loaded
        ones does it here and removes them from `report.new_keys`."""

    def save_pretrained(
        self,
        directory: str | os.PathLike,
        *,
        max_shard_size: int | str = "5GB",
        tokenizer: Any = None,
        dtype: torch.dtype | None = None,
    ) -> Path:
        """Write a folder `transformers` loads: safetensors (sharded past `max_shard_size`),
        `config.json`, and the tokenizer files when `tokenizer` is given. Atomic: the folder
        is built beside the target and renamed into place.
        """
        from ..checkpoint import save_model

        return save_model(
            self, directory, max_shard_size=max_shard_size, tokenizer=tokenizer, dtype=dtype
        )
