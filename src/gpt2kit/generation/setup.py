"""What every decoding strategy reads besides the model and the prompt rows.

`generate` (and `stream_generate`) build one `DecodeSetup` and hand it to the strategy they
pick (`decode_steps`, `beam_search`, `group_beam_search`, `contrastive_search`,
`assisted_decoding`), so the same ten values are written once here rather than threaded
through five signatures in an order that could drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import GenerationConfig
from .outputs import Record
from .processors import LogitsProcessor
from .stopping import StoppingCriteriaList, StopStringMatcher


@dataclass(frozen=True)
class DecodeSetup:
    """One `generate` call's decoding settings, shared by every strategy.

    Attributes:
        cfg: the resolved `GenerationConfig`.
        processors: the built logits processors (penalties, constraints, warpers).
        eos: end-of-sequence ids (empty: none).
        pad: the id written after a row finishes.
        max_new: new tokens at most per row (beam search stops at prompt + `max_new`).
        stop: the stop-string matcher, if `stop_strings` were given.
        generator: the RNG for sampling (None: torch's global one).
        extra_kwargs: passed to every model step (e.g. `encoder_hidden_states`).
        record: what `return_dict_in_generate` collects, or None.
        criteria: `transformers`-style stopping criteria (and `max_time`), or None.
    """

    cfg: GenerationConfig
    processors: Sequence[LogitsProcessor]
    eos: list[int]
    pad: int | None
    max_new: int
    stop: StopStringMatcher | None = None
    generator: torch.Generator | None = None
    extra_kwargs: dict[str, Any] = field(default_factory=dict)
    record: Record | None = None
    criteria: StoppingCriteriaList | None = None
