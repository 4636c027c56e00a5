"""Models: the task heads composed on the backbone (`gpt2kit.nn`), and the Auto classes.

The backbone layer (`backbone`, `base`, `cache`, `outputs`) lives in `gpt2kit.nn`, below
`gpt2kit.generation` and `gpt2kit.decode`, which import it; the heads here import
generation. `gpt2kit.models.backbone` (and `.base`, `.cache`, `.outputs`) stay importable:
they are the `gpt2kit.nn` modules themselves (one module object: a monkeypatch on either
name is seen by both).
"""

import importlib
import sys
from typing import Any

from ..nn import backbone, base, cache, outputs
from ..nn.backbone import GPT2Model
from ..nn.base import GPT2PreTrainedModel
from ..nn.cache import KVCache
from ..nn.outputs import BaseModelOutput, CausalLMOutput, ModelOutput

for _module in (backbone, base, cache, outputs):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
del _module

# The LM heads resolve on first use (PEP 562), for import cost: importing any head runs
# this package first, and `lm` brings `gpt2kit.generation` with it.
_LAZY = {"GPT2ForCausalLM": "lm", "GPT2LMHeadModel": "lm", "ScoreOutput": "lm"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
