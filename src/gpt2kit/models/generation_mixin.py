"""`GenerationMixin`: what a model with an LM head adds for decoding (`generate`,
`generation_config`); the decoding loop itself lives in `gpt2kit.generation`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import generation  # (its `generate` loads on first call: PEP 562)
from ..generation.config import GENERATION_CONFIG, GenerationConfig


class GenerationMixin:
    """`generate` for models with an LM head; the decoding loop lives in `gpt2kit.generation`."""

    def generate(
        self,
        inputs: Any = None,
        generation_config: Any = None,
        logits_processor: Any = None,
        stopping_criteria: Any = None,
        prefix_allowed_tokens_fn: Any = None,
        synced_gpus: bool | None = None,
        assistant_model: Any = None,
        streamer: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Continue `inputs [B, T]` (see `gpt2kit.generation.generate` for every option).

        `transformers`' signature and positional order (`generate(ids, generation_config)`);
        `input_ids=` is accepted for `inputs`, as there.

        Example:
            >>> import torch
            >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
            >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
            >>> model.generate(torch.tensor([[1, 2]]), max_new_tokens=3).shape
            torch.Size([1, 5])
        """
        if "input_ids" in kwargs:
            if inputs is not None:
                raise ValueError("pass the prompt once: inputs or input_ids, not both")
            inputs = kwargs.pop("input_ids")
        if synced_gpus:
            raise ValueError(
                "synced_gpus=True is not supported (gpt2kit's generate runs on one device); drop it"
            )
        return generation.generate(
            self,
            inputs,
            generation_config=generation_config,
            logits_processor=logits_processor or (),
            stopping_criteria=stopping_criteria,
            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
            assistant_model=assistant_model,
            streamer=streamer,
            **kwargs,
        )

    @property
    def generation_config(self) -> Any:
        """`generate`'s defaults: the checkpoint's `generation_config.json` when it has one,
        else built from the model config's special tokens (always present, as in
        `transformers`; written by `save_pretrained`)."""
        config = self.__dict__.get("_generation_config")
        if config is None:
            config = GenerationConfig.from_model_config(self.config)  # type: ignore[attr-defined]
            self.__dict__["_generation_config"] = config
        return config

    @generation_config.setter
    def generation_config(self, value: Any) -> None:
        self.__dict__["_generation_config"] = value

    @generation_config.deleter
    def generation_config(self) -> None:  # (back to the one built from the model config)
        self.__dict__.pop("_generation_config", None)

    def load_extra_files(self, folder: Path) -> None:
        """Decoding defaults saved with the checkpoint (`generation_config.json`) become
        `generate`'s defaults (called by the checkpoint loader; see `GPT2PreTrainedModel`)."""
        super().load_extra_files(folder)  # type: ignore[misc]
        if (Path(folder) / GENERATION_CONFIG).is_file():
            self.generation_config = GenerationConfig.from_pretrained(folder)

    def save_extra_files(self, folder: Path) -> None:
        """Write `generation_config.json` into the save's scratch folder."""
        super().save_extra_files(folder)  # type: ignore[misc]
        generation_config = self.generation_config
        if generation_config is not None:
            generation_config.save_pretrained(folder)
