"""Typed outputs of every model, with the field names `transformers` uses.

Each output is a dataclass that is also an ordered dict of its non-None fields, as
`transformers.ModelOutput` is: `out.logits`, `out["logits"]`, `"logits" in out`,
`out.keys()`, `out.items()`, and `out[0]`, `out[1:]`, `out.to_tuple()` over the non-None
fields in field order (`out[0]` is the loss when there is one, else the logits). Code that
branches on `isinstance(out, dict)` (transformers' Trainer does) sees a dict. `cache` is
`transformers` 5.x's name for `past_key_values` and reads the same field.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

import torch

from .cache import KVCache

Tensors = tuple[torch.Tensor, ...]

_ALIASES = {"cache": "past_key_values"}

# What a head passes through from the backbone's output (into the fields its output has).
_PASSED_THROUGH = ("past_key_values", "hidden_states", "attentions", "cross_attentions")


class ModelOutput(OrderedDict):
    """Dataclass base: attributes, and a dict of the fields that are not None."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = self.__dict__.get(f.name)
            if value is not None:
                super().__setitem__(f.name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        name = _ALIASES.get(name, name)
        if name in self.__dataclass_fields__ and value is not None:  # type: ignore[attr-defined]
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        key = _ALIASES.get(key, key)
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            return super().__getitem__(_ALIASES.get(key, key))
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return super().__contains__(_ALIASES.get(key, key) if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(_ALIASES.get(key, key), default)

    @classmethod
    def from_backbone(cls, backbone: Any, **fields: Any) -> Any:
        """`cls(**fields)` with the cache, hidden states and attentions of `backbone` (a
        `BaseModelOutput`, or None) in whichever of those fields `cls` has, as
        `transformers`' heads pass them on; the head's own `fields` win."""
        for name in _PASSED_THROUGH:
            if name in cls.__dataclass_fields__ and name not in fields:  # type: ignore[attr-defined]
                fields[name] = getattr(backbone, name, None)
        return cls(**fields)

    def to_tuple(self) -> tuple[Any, ...]:
        """The non-None fields in field order (what `return_dict=False` returns)."""
        return tuple(self.values())

    @property
    def cache(self) -> Any:
        """`transformers` 5.x's name of `past_key_values`."""
        return self.__dict__.get("past_key_values")

    def __reduce__(self) -> Any:  # (pickle and copy rebuild the dataclass, not an empty dict)
        return type(self), tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    def __delitem__(self, key: Any) -> None:
        raise TypeError(f"{type(self).__name__} fields cannot be deleted; set them to None")

    def pop(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} fields cannot be popped")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{type(self).__name__} fields are set one by one (out.name = value)")

    def setdefault(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} fields are set one by one (out.name = value)")


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
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    probabilities: torch.Tensor | None = None  # (not in transformers: last, so tuples agree)


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
    """Encoder-decoder LM: decoder `logits [B, T, V]`, `loss` the decoder CE against the
    unshifted labels; `encoder_last_hidden_state [B, S, e]` the encoder's output;
    `transformers`' fields and order."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None
