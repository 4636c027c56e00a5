"""gpt2kit: one GPT-2 backbone, every task head, Hugging Face checkpoints both ways."""

__version__ = "0.1.0"

from .checkpoint import CheckpointError, LoadReport  # noqa: E402
from .config import ConfigError, GPT2Config  # noqa: E402
from .models import (  # noqa: E402
    BaseModelOutput,
    CausalLMOutput,
    GPT2ForCausalLM,
    GPT2LMHeadModel,
    GPT2Model,
    GPT2PreTrainedModel,
    KVCache,
    ScoreOutput,
)

__all__ = [
    "BaseModelOutput",
    "CausalLMOutput",
    "CheckpointError",
    "ConfigError",
    "GPT2Config",
    "GPT2ForCausalLM",
    "GPT2LMHeadModel",
    "GPT2Model",
    "GPT2PreTrainedModel",
    "KVCache",
    "LoadReport",
    "ScoreOutput",
    "__version__",
]
