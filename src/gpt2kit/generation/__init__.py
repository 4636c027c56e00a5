"""Text generation: `generate`, `GenerationConfig`, logits processors, streaming.

Example:
    >>> import torch
    >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
    >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
    >>> generate(model, torch.tensor([[1, 2]]), max_new_tokens=3, do_sample=True, seed=0).shape
    torch.Size([1, 5])
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve on first use (PEP 562), for import cost: a head that can generate imports
# this package for `GenerationConfig` (its `generation_config`), and loads the sampling
# loop, beam search and the CPU decoder (`search`, `gpt2kit.decode`) only when it first
# generates. (Not to dodge a cycle: every submodule imports only lower layers.)
_EXPORTS: dict[str, str] = {
    "GENERATION_CONFIG": "config",
    "GenerationConfig": "config",
    **dict.fromkeys(
        (
            "ForcedBOSTokenLogitsProcessor",
            "ForcedEOSTokenLogitsProcessor",
            "LogitNormalization",
            "MinLengthLogitsProcessor",
            "MinNewTokensLogitsProcessor",
            "MinPLogitsWarper",
            "NoBadWordsLogitsProcessor",
            "NoRepeatNGramLogitsProcessor",
            "PrefixConstrainedLogitsProcessor",
            "RepetitionPenaltyLogitsProcessor",
            "SequenceBiasLogitsProcessor",
            "SuppressTokensAtBeginLogitsProcessor",
            "SuppressTokensLogitsProcessor",
            "TemperatureLogitsWarper",
            "TopKLogitsWarper",
            "TopPLogitsWarper",
            "TypicalLogitsWarper",
            "build_processors",
        ),
        "processors",
    ),
    "GenerateOutput": "search",
    "generate": "search",
    **dict.fromkeys(
        ("MaxTimeCriteria", "StoppingCriteria", "StoppingCriteriaList", "StopStringMatcher"),
        "stopping",
    ),
    **dict.fromkeys(
        ("IncrementalDecoder", "TextIteratorStreamer", "TextStreamer", "stream_generate"),
        "streaming",
    ),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "GENERATION_CONFIG",
    "ForcedBOSTokenLogitsProcessor",
    "ForcedEOSTokenLogitsProcessor",
    "MaxTimeCriteria",
    "PrefixConstrainedLogitsProcessor",
    "SequenceBiasLogitsProcessor",
    "StoppingCriteria",
    "StoppingCriteriaList",
    "SuppressTokensAtBeginLogitsProcessor",
    "SuppressTokensLogitsProcessor",
    "GenerateOutput",
    "GenerationConfig",
    "IncrementalDecoder",
    "LogitNormalization",
    "MinLengthLogitsProcessor",
    "MinNewTokensLogitsProcessor",
    "MinPLogitsWarper",
    "NoBadWordsLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "RepetitionPenaltyLogitsProcessor",
    "StopStringMatcher",
    "TemperatureLogitsWarper",
    "TextIteratorStreamer",
    "TextStreamer",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "TypicalLogitsWarper",
    "build_processors",
    "generate",
    "stream_generate",
]
