"""Text generation: `generate`, `GenerationConfig`, logits processors, streaming.

Example:
    >>> import torch
    >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
    >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
    >>> generate(model, torch.tensor([[1, 2]]), max_new_tokens=3, do_sample=True, seed=0).shape
    torch.Size([1, 5])
"""

from .config import GENERATION_CONFIG, GenerationConfig
from .processors import (
    ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor,
    LogitNormalization,
    MinLengthLogitsProcessor,
    MinNewTokensLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    PrefixConstrainedLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    build_processors,
)
from .search import GenerateOutput, generate
from .stopping import MaxTimeCriteria, StoppingCriteria, StoppingCriteriaList, StopStringMatcher
from .streaming import IncrementalDecoder, TextIteratorStreamer, TextStreamer, stream_generate

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
