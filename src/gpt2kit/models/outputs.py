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


@dataclass
class SequenceClassifierOutput(ModelOutput):
    """Sequence classification/regression: `logits [B, num_labels]` pooled from each sequence."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    """Token classification: `logits [B, T, num_labels]`, one row of class scores per token."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    """Extractive QA: `start_logits`, `end_logits [B, T]`; `loss` the mean of both CEs."""

    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class MultipleChoiceModelOutput(ModelOutput):
    """Multiple choice: `logits [B, C]` one score per choice, `probabilities` their softmax."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    probabilities: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class DoubleHeadsModelOutput(ModelOutput):
    """LM + multiple choice: `logits [B, C, T, V]`, `mc_logits [B, C]`; `loss` is the LM loss."""

    loss: torch.Tensor | None = None
    mc_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mc_logits: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class TextClassifierOutput(ModelOutput):
    """Packed text classification: `logits [N, num_labels]` one row per text, in input order;
    `pooled_output [N, d]` the pooled vector of each text."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class DocumentClassifierOutput(ModelOutput):
    """Document classification: `logits [D, num_labels]` one row per document;
    `pooled_output [D, d]` the aggregated document vectors; `window_weights` the learned
    attention weights over each document's windows (a list of `[W_i]`) when
    `doc_aggregation="attention"`."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    window_weights: list[torch.Tensor] | None = None


@dataclass
class Seq2SeqLMOutput(ModelOutput):
    """Encoder-decoder LM: decoder `logits [B, T, V]`, `loss` the shifted decoder CE;
    `encoder_last_hidden_state [B, S, d]` what the decoder attended to."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
