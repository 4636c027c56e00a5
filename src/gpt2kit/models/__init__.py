"""Models: one backbone (`GPT2Model`) and the task heads composed on it."""

from .backbone import GPT2Model
from .base import GPT2PreTrainedModel
from .cache import KVCache
from .lm import GPT2ForCausalLM, GPT2LMHeadModel, ScoreOutput
from .outputs import BaseModelOutput, CausalLMOutput, ModelOutput

__all__ = [
    "BaseModelOutput",
    "CausalLMOutput",
    "GPT2ForCausalLM",
    "GPT2LMHeadModel",
    "GPT2Model",
    "GPT2PreTrainedModel",
    "KVCache",
    "ModelOutput",
    "ScoreOutput",
]
