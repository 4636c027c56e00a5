"""Models: the task heads composed on the backbone (`gpt2kit.nn`), and the Auto classes.

The backbone layer (`backbone`, `base`, `cache`, `outputs`) lives in `gpt2kit.nn`, below
`gpt2kit.generation` and `gpt2kit.decode`, which import it; the heads here import
generation. `gpt2kit.models.backbone` (and `.base`, `.cache`, `.outputs`) stay importable:
they are the `gpt2kit.nn` modules themselves (one module object: a monkeypatch on either
name is seen by both).
"""

import sys

from ..nn import backbone, base, cache, outputs
from ..nn.backbone import GPT2Model
from ..nn.base import GPT2PreTrainedModel
from ..nn.cache import KVCache
from ..nn.outputs import BaseModelOutput, CausalLMOutput, ModelOutput
from .lm import GPT2ForCausalLM, GPT2LMHeadModel, ScoreOutput

for _module in (backbone, base, cache, outputs):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
del _module

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
