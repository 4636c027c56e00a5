"""oneDNN pre-packed projection weights for few-row products on CPU (batched decoding).

Why. At 2-256 rows a BLAS `sgemm` repacks the whole weight matrix into its panel layout
on every call, so the product streams the weights at a third of what the memory allows:
measured on this project's 2-core EPYC, GPT-2 small at 8 rows, 6-7 GB/s through
`addmm` against 15-21 GB/s for the same products on weights packed once for oneDNN
(`torch.ops.mkldnn._reorder_linear_weight`, what inductor's `freezing` uses); the
50257-wide LM head 6.6 vs 8.4 GB/s. End to end (`benchmarks/bench_generation.py`),
batch-8 top-k sampling with 124M went from 1.92x to 2.06x-2.44x `transformers`.

Cost. The packed copy sits beside the weights (about +0.45 GB for 124M in fp32), so it
is made only for batched decoding on CPU in fp32 eval mode (`use_decode_layout(rows)`
with `rows > 1`, and the server's batcher), kept across calls, checked against the
weight's address and version at every use (a changed or moved weight is never read
stale), and dropped by `train()`, by a batch-1 `generate` that moves the weights (into
the decode arena, or column-major without the native kernels) or by
`release_decode_weights()`. Once the weights sit in the arena (row-major, what packing
reads), batch-1 and batched calls alternate with no relayout or repacking.
`model.pack_decode_weights = False` turns it off.

The two ops are PyTorch-internal (the oneDNN bindings inductor uses); where they are
missing or fail, nothing is packed and the ordinary products run.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger("gpt2kit")

_available: bool | None = None


def packing_available() -> bool:
    """Whether this PyTorch build has the oneDNN linear ops (checked once)."""
    global _available
    if _available is None:
        ops = torch.ops.mkldnn
        _available = (
            torch.backends.mkldnn.is_available()
            and hasattr(ops, "_reorder_linear_weight")
            and hasattr(ops, "_linear_pointwise")
        )
    return _available


class PackedWeight:
    """A weight packed for oneDNN, valid while the weight keeps its address and version.

    Not copied by `deepcopy` or pickling (oneDNN tensors have no storage to copy); a copy
    of the model packs again when it first decodes a batch.
    """

    def __init__(self, weight: torch.Tensor, rows: int) -> None:
        self.key = (weight.data_ptr(), weight._version)
        with torch.inference_mode(False), torch.no_grad():
            self.tensor = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)

    def valid_for(self, weight: torch.Tensor) -> bool:
        return self.key == (weight.data_ptr(), weight._version)

    def __deepcopy__(self, memo: dict) -> None:
        return None

    def __reduce__(self) -> tuple:
        return (type(None), ())


def linear(x2d: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None) -> torch.Tensor:
    """`x2d @ W.T + bias` through the packed weight."""
    return torch.ops.mkldnn._linear_pointwise(x2d.contiguous(), packed.tensor, bias, "none", [], "")


def pack_linears(model: nn.Module, rows: int) -> None:
    """Pack every fp32 `nn.Linear` weight of `model` on CPU for `rows`-row products
    (kept where still valid)."""
    global _available
    if not packing_available():
        return
    try:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not isinstance(module, nn.Linear) or type(weight) is not nn.Parameter:
                continue  # sharded (DTensor) weights stay as they are
            if weight.device.type != "cpu" or weight.dtype != torch.float32:
                continue
            current = module.__dict__.get("packed_weight")
            if current is None or not current.valid_for(weight):
                module.packed_weight = PackedWeight(weight, rows)
    except RuntimeError as err:  # a build whose oneDNN ops refuse: plain products
        logger.warning("oneDNN weight packing unavailable (%s); using plain products", err)
        _available = False
        release_linears(model)


def release_linears(model: nn.Module) -> None:
    """Drop every packed weight of `model`."""
    for module in model.modules():
        module.__dict__.pop("packed_weight", None)
