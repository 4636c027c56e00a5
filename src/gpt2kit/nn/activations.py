"""Activation functions by their `transformers` names (`config.activation_function`,
`summary_activation`).

A leaf module (imports only torch): the backbone's MLP, the double-heads summary and the
decoder's plan check all read this one table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


# Named functions, not lambdas: a model holds its activation, and pickling the model
# (`torch.save(model)`, `copy.deepcopy`) needs it importable by name.
def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    # `gelu_new` is OpenAI's tanh approximation; `F.gelu(approximate="tanh")` computes the
    # same function in one fused kernel (agrees with `transformers`' formula to ~1e-7).
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


ACT_FNS = {
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu": F.gelu,
    "gelu_fast": _gelu_fast,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "mish": F.mish,
    "linear": _identity,
}
