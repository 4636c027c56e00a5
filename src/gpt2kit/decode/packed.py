"""oneDNN pre-packed projection weights for few-row products on CPU (batched decoding).

Why. At 2-256 rows a BLAS `sgemm` repacks the whole weight matrix into its panel layout
on every call, so the product streams the weights at a third of what the memory allows:
measured on this project's 2-core EPYC, GPT-2 small at 8 rows, 6-7 GB/s through
`addmm` against 15-21 GB/s for the same products on weights packed once for oneDNN
(`torch.ops.mkldnn._reorder_linear_weight`, what inductor's `freezing` uses); the
50257-wide LM head 6.6 vs 8.4 GB/s. End to end (`benchmarks/bench_generation.py`),
batch-8 top-k sampling with 124M went from 1.92x to 2.06x-2.44x `transformers`.

Cost. The packed copy sits beside the weights (about +0.45 GB for 124M in fp32), so it
is made only for batched decoding on CPU in fp32 of more than `native.MAX_FP32_ROWS`
rows (or without the native kernel): `DecodeWeights.prepare` (a `generate` call, the
server's batcher) packs, the copies are kept with the decoder's other weight copies
(never on the model) until `gpt2kit.decode.release(model)` or the model is collected,
and each is checked against its weight's address and version at every use (a changed or
moved weight is never read stale, it is repacked at the next call).

The two ops are PyTorch-internal (the oneDNN bindings inductor uses); where they are
missing or fail, nothing is packed and the ordinary products run.
"""

from __future__ import annotations

import torch

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


def mark_unavailable() -> None:
    """Record that this build's oneDNN ops refused to pack (plain products from now on)."""
    global _available
    _available = False
