"""Typed outputs of every model, with the field names `transformers` uses.

Each output is a dataclass; like `transformers.ModelOutput` it also indexes as a tuple of
its non-None fields (`out[0]` is the loss when there is one, else the logits), so code
written against `transformers` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from .cache import KVCache

Tensors = tuple[torch.Tensor, ...]


class ModelOutput:
    """Dataclass base: attribute access, `out["logits"]`, and `out[0]` over non-None fields."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for v in (getattr(self, f.name) for f in fields(self)) if v is not None)  # type: ignore[arg-type]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]  # type: ignore[arg-type]


@dataclass
class BaseModelOutput(ModelOutput):
    """`GPT2Model` output. `last_hidden_state` is `[B, T, d]` after the final layer norm."""

    last_hidden_state: torch.Tensor
    past_key_values: KVCache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    """LM output: `logits [B, T, V]`, `loss` the shifted cross-entropy when labels are given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
