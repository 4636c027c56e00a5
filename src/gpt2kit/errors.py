"""Error types shared across layers (a leaf: imports nothing of gpt2kit).

`UnsupportedArgumentError` is raised by the models (`from_pretrained`, heads) and by the
adapter methods `GPT2PreTrainedModel` mixes in; both import it from here, and
`gpt2kit.nn.base` (formerly `gpt2kit.models.base`) re-exports it.
"""

from __future__ import annotations


class UnsupportedArgumentError(TypeError, ValueError):
    """A keyword gpt2kit does not take; the message names it and what to use instead."""
