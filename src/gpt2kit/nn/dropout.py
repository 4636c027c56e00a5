"""Training's dropout on CPU through the native kernel, bit for bit PyTorch's.

Why: `F.dropout` on CPU draws its mask one double at a time from the default generator
(~13 ns per element on the 2-core Xeon) and then divides and multiplies in two more
passes; in a 124M LoRA step on CPU its 37 draws (the model's own dropout: embeddings,
residuals, attention maps) were ~0.55 s of 3.8 s. `gpt2kit.native.dropout` reads the same
MT19937 stream from the generator's state and applies it in one pass (~1.5 ns per
element), so a run draws exactly the masks `F.dropout` would, leaves the generator where
`F.dropout` would, and stays equal to `transformers` under the same seed.

- `Dropout`: an `nn.Dropout` (same attributes, `isinstance` holds) that takes the native
  pass where `native.dropout_applies` (fp32 contiguous CPU, outside `torch.compile`),
  `F.dropout` elsewhere.
- `attention_with_dropout`: SDPA with `dropout_p > 0` on CPU runs its math path
  (`_scaled_dot_product_attention_math`, composite: its backward is its ops' backward);
  this is that path op for op with the native dropout. Used only once a check on a small
  input found it equal to this PyTorch's SDPA, outputs and gradients bit for bit
  (`sdpa_reproduced`; a PyTorch whose math path differs keeps SDPA).
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .. import native


class _NativeDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        drawn = native.dropout(x, p)
        if drawn is None:  # (a generator state the kernel cannot read: PyTorch's draw)
            mask = torch.empty(x.shape, dtype=torch.uint8).bernoulli_(1.0 - p)
            drawn = x * (mask.to(x.dtype) / (1.0 - p)), mask
        y, mask = drawn
        ctx.save_for_backward(mask)
        ctx.p = p
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return native.dropout_backward(dy, mask, ctx.p), None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)`, the native pass where it applies (same result, same
    generator state after)."""
    if training and native.dropout_applies(x, p):
        return _NativeDropout.apply(x, p)
    return F.dropout(x, p, training)


class Dropout(nn.Dropout):
    """`nn.Dropout` whose training pass is `dropout` above (in place: `F.dropout`'s)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(input)
        return dropout(input, self.p, self.training)


def _sdpa_math(q, k, v, mask, p: float, causal: bool, scale: float, drop) -> torch.Tensor:
    # `_scaled_dot_product_attention_math`'s ops in its order: q and k^T each scaled by
    # sqrt(scale), a bool mask (or the causal one) as an additive 0 / -inf one,
    # `_safe_softmax`, dropout, the product with v.
    root = math.sqrt(scale)
    att = torch.matmul(q * root, k.transpose(-2, -1) * root)
    if causal:
        L, S = q.shape[-2], k.shape[-2]
        mask = torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=att.dtype).masked_fill(~mask, -math.inf)
        att = att + mask
    att = torch.ops.aten._safe_softmax(att, -1)
    return torch.matmul(drop(att, p), v)


def attention_with_dropout(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    p: float,
    causal: bool,
    scale: float,
) -> torch.Tensor:
    """`F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
    is_causal=causal, scale=scale)` in training (fp32 CPU, 0 < p < 1), bit for bit, with
    the native dropout where `sdpa_reproduced()`; SDPA itself otherwise."""
    if (
        q.dtype == torch.float32
        and q.device.type == "cpu"
        and not torch.compiler.is_compiling()  # (a compiled graph keeps SDPA)
        and sdpa_reproduced()
    ):
        return _sdpa_math(q, k, v, mask, p, causal, scale, dropout)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal, scale=scale
    )


_REPRODUCED: bool | None = None


def sdpa_reproduced() -> bool:
    """Whether `_sdpa_math` with the native dropout equals this PyTorch's SDPA (outputs
    and input gradients, bit for bit, causal and with a padding mask), checked once per
    process on a small input with the generator forked (the caller's stream is untouched),
    on a thread of its own."""
    global _REPRODUCED
    if _REPRODUCED is None:
        found: list[bool] = []
        # On a thread of its own: grad mode, autocast and saved-tensor hooks are per thread,
        # so the check neither sees the caller's (a checkpointed forward's hooks would
        # record its tensors) nor changes them; the caller waits, so the generator it
        # forks is not drawn from meanwhile.
        check = threading.Thread(target=lambda: found.append(_check_sdpa()), daemon=True)
        check.start()
        check.join()
        _REPRODUCED = bool(found and found[0])
    return _REPRODUCED


def _check_sdpa() -> bool:
    if not native.dropout_applies(torch.empty(1), 0.5):
        return False
    if not hasattr(torch.ops.aten, "_safe_softmax"):  # (PyTorch 2.5+'s math path)
        return False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        q, k, v = (torch.randn(2, 3, 7, 8, requires_grad=True) for _ in range(3))
        pad = torch.ones(2, 1, 7, 7, dtype=torch.bool).tril()
        pad[1, :, :, 0] = False
        for mask, causal in ((None, True), (pad, False)):
            results = []
            for run in (F.scaled_dot_product_attention, None):
                torch.manual_seed(1)
                if run is None:
                    y = _sdpa_math(q, k, v, mask, 0.3, causal, 0.37, dropout)
                else:
                    y = run(q, k, v, attn_mask=mask, dropout_p=0.3, is_causal=causal, scale=0.37)
                grads = torch.autograd.grad(y, (q, k, v), torch.ones_like(y))
                results.append((y, *grads))
            if not all(_same_bits(a, b) for a, b in zip(*results)):
                return False
    return True


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))
