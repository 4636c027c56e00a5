"""Quantized modules that replace a model's linear layers (and a tied token embedding).

`QuantizedLinear` holds the int8 / packed int4 weight and its scales as buffers, and the
bias as an ordinary parameter; its own `forward` is the plain PyTorch path. Up to
`ACTIVATION_ROWS` rows of input (a decoding step, a small batch): fp32 activations times
the dequantized weight, a block of `BLOCK_ROWS` output rows at a time (so no full fp32
copy of a large matrix such as the LM head ever exists). More rows (a prompt's prefill,
an evaluation batch; compute-bound): as `input_activations` says (`prompt_product`):
"int8" quantizes each input row to int8 (dynamic, per token) and multiplies in an int8
GEMM, "bfloat16" multiplies bf16 blocks, None as for few rows. CPU decoding reads the
quantized bytes directly with the native kernels (`gpt2kit.decode`): those stand in for
this forward while a `CPUDecoder` runs, with the same numerics row count by row count
(the decoder's prompt path calls `prompt_product` too, or computes what it computes).

`QuantizedEmbedding` is the token embedding of a model whose LM head is tied to it: it
reads the LM head's quantized matrix (one copy of the bytes) and dequantizes only the
rows it looks up. It holds no tensors of its own (so `.to(device)` keeps the two tied).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import tensor as qt
from .config import QuantizationConfig
from .gemm import bf16_linear, int8_matmul

logger = logging.getLogger("gpt2kit")

BLOCK_ROWS = 2048  # output rows dequantized at a time by the PyTorch path
# Products of more rows than this quantize their input as `input_activations` says; fewer
# rows keep fp32 activations (memory-bound: the weights' bytes decide, not the arithmetic).
# Equal to the decoder's few-row kernel limit (`native.MAX_FP32_ROWS`), so that a
# product's numbers never depend on which path ran it.
ACTIVATION_ROWS = 32


class QuantizedLinear(nn.Module):
    """`nn.Linear`'s function with weight-only int8 (per output channel) or int4 (per
    group of inputs) weights. Buffers: `qweight` (`[out, in]` int8, or `[out, in / 2]` uint8
    for int4 in the kernel layout of `quantization/tensor.py`) and `weight_scale` (fp32,
    `[out]` or `[out, groups]`). Inference only: the weights have no gradient. There is
    no `weight` attribute (code that reads one would get a full float matrix per access,
    or train it): `dequantize()` builds it."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bits: int = 8,
        group_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        input_activations: str | None = None,
    ) -> None:
        super().__init__()
        if bits not in (8, 4):
            raise ValueError(f"QuantizedLinear(bits={bits}): 8 or 4")
        if input_activations not in (None, "int8", "bfloat16") or (
            input_activations == "int8" and bits != 8
        ):
            raise ValueError(
                f"QuantizedLinear(bits={bits}, input_activations={input_activations!r}): "
                "None, 'bfloat16', or 'int8' (int8 weights only)"
            )
        self.input_activations = input_activations
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        self.group_size = group_size if bits == 4 else None
        if bits == 8:
            q = torch.zeros(out_features, in_features, dtype=torch.int8, device=device)
            s = torch.ones(out_features, dtype=torch.float32, device=device)
        else:
            assert group_size is not None
            qt.check_int4_shape(in_features, group_size)
            q = torch.zeros(out_features, in_features // 2, dtype=torch.uint8, device=device)
            n = qt.groups(in_features, group_size)
            s = torch.ones(out_features, n, dtype=torch.float32, device=device)
        self.register_buffer("qweight", q)
        self.register_buffer("weight_scale", s)
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False)
            if bias
            else None
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: QuantizationConfig) -> QuantizedLinear:
        w = linear.weight
        module = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            config.bits,
            config.group_size,
            device=w.device,
            dtype=w.dtype,
            input_activations=config.input_activations,
        )
        module.set_weight(w)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())  # type: ignore[union-attr]
        return module

    @torch.no_grad()
    def set_weight(self, weight: torch.Tensor) -> None:
        """Quantize `weight [out, in]` into this module's buffers."""
        if self.bits == 8:
            q, s = qt.quantize_int8(weight)
        else:
            v, s = qt.quantize_int4_values(weight, self.group_size)  # type: ignore[arg-type]
            q = qt.pack_int4(v, self.group_size)  # type: ignore[arg-type]
        self.qweight = q.to(self.qweight.device)
        self.weight_scale = s.to(self.weight_scale.device)

    def int_values(self, rows: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        """The signed integer weights of `rows` as int8 `[rows, in]` (int4 unpacked)."""
        q = self.qweight[rows]
        return q if self.bits == 8 else qt.unpack_int4(q, self.in_features, self.group_size)  # type: ignore[arg-type]

    def dequantize(
        self, rows: slice | torch.Tensor = slice(None), dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The weight `[rows, in]` as `q * scale` in `dtype` (the reference the kernels match)."""
        q, s = self.int_values(rows), self.weight_scale[rows]
        if self.bits == 8:
            w = qt.dequantize_int8(q, s)
        else:
            w = qt.dequantize_int4_values(q, s, self.group_size)  # type: ignore[arg-type]
        return w.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prompt_numerics(x) is not None:
            return prompt_product(self, x)
        return self._blocks(x, x.dtype)

    def prompt_numerics(self, x: torch.Tensor) -> str | None:
        """`input_activations` where it applies to `x`: more than `ACTIVATION_ROWS` rows and
        no gradient asked for through `x` (rounding the input has none: autograd gets the
        weight-only product); else None (fp32 activations times the dequantized weight)."""
        acts = self.input_activations
        if acts is None or x.dim() == 0 or x.numel() <= ACTIVATION_ROWS * x.shape[-1]:
            return None
        if x.requires_grad and torch.is_grad_enabled():
            return None
        return acts

    def _blocks(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """`x` (as `dtype`) times the weight dequantized to `dtype`, `BLOCK_ROWS` output
        rows at a time; the bias added in `x`'s dtype."""
        out, bias, xd = self.out_features, self.bias, x.to(dtype)
        if dtype == x.dtype:
            if out <= BLOCK_ROWS:
                return F.linear(x, self.dequantize(dtype=dtype), bias)
            parts = []
            for start in range(0, out, BLOCK_ROWS):
                rows = slice(start, min(start + BLOCK_ROWS, out))
                b = None if bias is None else bias[rows]
                parts.append(F.linear(x, self.dequantize(rows, dtype), b))
            return torch.cat(parts, dim=-1)
        y = torch.empty(*x.shape[:-1], out, dtype=x.dtype, device=x.device)
        for start in range(0, out, BLOCK_ROWS):
            rows = slice(start, min(start + BLOCK_ROWS, out))
            w = self.dequantize(rows, dtype)
            y[..., rows] = bf16_linear(xd, w) if dtype == torch.bfloat16 else F.linear(xd, w)
        return y.add_(bias) if bias is not None else y

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.qweight, self.weight_scale))

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: code written for nn.Linear reads `.weight`
        # and would otherwise get nn.Module's bare "no attribute" error, deep inside it.
        # Still an AttributeError, so `hasattr(module, "weight")` stays False.
        if name == "weight":
            raise AttributeError(
                f"QuantizedLinear (int{self.bits}) has no float `.weight`: its weight is "
                "`qweight` with `weight_scale`, and `dequantize()` returns a float copy. To "
                "change the weights, change them on the fp32 model, then quantize it "
                "(from_pretrained(..., quantization=...))"
            )
        return super().__getattr__(name)

    def _apply(self, fn: Any, recurse: bool = True) -> QuantizedLinear:
        # `.to(dtype)` / `.half()` / `.bfloat16()` cast the bias (the activations' dtype)
        # but not the scales: they belong to the integer weights (as `qweight`, which no
        # float cast touches) and stay fp32, as `from_pretrained(dtype=..., quantization=...)`
        # makes them; a device move still moves them.
        scale = self.weight_scale
        super()._apply(fn, recurse)
        moved = self.weight_scale
        if moved.dtype != scale.dtype:
            self.weight_scale = scale.to(moved.device)
        return self

    @torch.no_grad()
    def resize_rows(self, n: int, new_rows: torch.Tensor | None = None) -> None:
        """Keep the first `min(n, out_features)` output rows as they are (their integers and
        scales unchanged) and quantize `new_rows [n - out_features, in]` after them: the
        vocabulary resize of a quantized LM head. A bias grows with zeros."""
        keep = min(n, self.out_features)
        q, s = self.qweight[:keep], self.weight_scale[:keep]
        added = n - keep
        if added:
            if new_rows is None or tuple(new_rows.shape) != (added, self.in_features):
                raise ValueError(
                    f"resize_rows({n}): pass new_rows of shape ({added}, {self.in_features})"
                )
            extra = QuantizedLinear(
                self.in_features,
                added,
                bias=False,
                bits=self.bits,
                group_size=self.group_size,
                device=q.device,
            )
            extra.set_weight(new_rows.to(q.device))
            q = torch.cat([q, extra.qweight])
            s = torch.cat([s, extra.weight_scale])
        self.qweight, self.weight_scale = q.contiguous(), s.contiguous()
        if self.bias is not None:
            bias = self.bias.new_zeros(n)
            bias[:keep] = self.bias[:keep]
            self.bias = nn.Parameter(bias, requires_grad=False)
        self.out_features = n

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.bits == 4 else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, bits={self.bits}{group}, "
            f"input_activations={self.input_activations!r}"
        )


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(q [rows, in] int8, scale [rows, 1] fp32)` for `x [rows, in]`: symmetric, one scale
    per row (token), `scale = max|x_row| / 127` (1 for an all-zero row), `q = round(x /
    scale)`, so `|q| <= 127`. A row with a NaN or an infinity gets a NaN scale: its outputs
    are NaN, as the fp32 product's would be NaN or infinite."""
    x = x.float()
    # (abs + amax: measured ~10x faster than vector_norm(inf) at 128 x 768 on CPU)
    top = x.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(top > 0, top / qt.INT8_MAX, torch.ones_like(top))
    scale = torch.where(torch.isfinite(top), scale, torch.full_like(top, float("nan")))
    # (a NaN row's integers are whatever the cast makes of NaN: its NaN scale wins)
    q = torch.round(x / scale).to(torch.int8)
    return q, scale


def prompt_product(module: QuantizedLinear, x: torch.Tensor) -> torch.Tensor:
    """`module(x)` for a product of more than `ACTIVATION_ROWS` rows, with
    `module.input_activations`' numerics (see `QuantizationConfig`):

    - "int8": `(round(x / sx) @ q.T) * sx * sw + bias`, the integer sums exact (int32);
    - "bfloat16": `bf16(x) @ bf16(q * s).T` accumulated in fp32, plus the bias;
    - None: `x @ (q * s).T + bias` in `x`'s dtype.

    The decoder's prompt path (`decode.CPUDecoder._qlinear`) computes the same."""
    acts = module.input_activations
    if acts == "int8":
        shape = x.shape
        xq, sx = quantize_activations(x.reshape(-1, shape[-1]))
        # (int32 -> fp32 first: a promoting mul(int32, fp32) takes PyTorch's slower casting
        # loop; then two in-place passes, the bias added as `bias + y * sx`)
        y = int8_matmul(xq, module.qweight).float().mul_(module.weight_scale)
        if module.bias is not None:
            y = torch.addcmul(module.bias, y, sx, out=y)
        else:
            y.mul_(sx)
        return y.view(*shape[:-1], module.out_features).to(x.dtype)
    if acts == "bfloat16":
        return module._blocks(x, torch.bfloat16)
    return module._blocks(x, x.dtype)


class QuantizedEmbedding(nn.Module):
    """The token embedding tied to a `QuantizedLinear` LM head: row `i` is the head's
    dequantized row `i` (see the module docstring)."""

    def __init__(
        self,
        head: QuantizedLinear,
        padding_idx: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dtype = dtype  # (of the rows it returns: the model's activations)
        self.__dict__["head"] = head  # (not a child: its tensors are the LM head's)
        self.num_embeddings, self.embedding_dim = head.out_features, head.in_features
        self.padding_idx = padding_idx
        self.max_norm = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        # (not while compiled: the check reads the ids' values, which a fixed-shape graph
        # cannot; the compiled decode step embeds the ids it just picked, in range)
        if (
            not torch.compiler.is_compiling()
            and flat.numel()
            and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings)
        ):
            raise IndexError(
                f"token id out of range for an embedding of {self.num_embeddings} rows"
            )
        rows = self.head.dequantize(flat, self.dtype)
        return rows.view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, tied to the quantized LM head"

    def __getattr__(self, name: str) -> Any:
        if name == "weight":  # (see QuantizedLinear.__getattr__)
            raise AttributeError(
                "the token embedding of a quantized model with tied embeddings has no float "
                "`.weight`: its rows are the quantized LM head's (`model.lm_head.qweight`, "
                "dequantized per lookup), and `model.lm_head.dequantize()` returns the float "
                "matrix as a copy. To change the embedding, change it on the fp32 model, "
                "then quantize it"
            )
        return super().__getattr__(name)

    def _apply(self, fn: Any, recurse: bool = True) -> QuantizedEmbedding:
        # No tensors of its own: learn what `fn` does to a float tensor of the rows' dtype,
        # so `.to(torch.bfloat16)` / `.half()` make the rows follow the rest of the model.
        self.dtype = fn(torch.empty(0, dtype=self.dtype)).dtype
        return super()._apply(fn, recurse)


# A class that computes exactly `F.linear` says so with this attribute in its own body (the
# backbone's `Linear` does); its subclasses do not inherit the mark. A mark, not an import:
# quantization sits below the backbone layer (`gpt2kit.nn` imports it).
PLAIN_LINEAR = "_gpt2kit_plain_linear"


def _is_plain_linear(module: nn.Module) -> bool:
    cls = type(module)
    return cls is nn.Linear or bool(cls.__dict__.get(PLAIN_LINEAR, False))


def quantize_model(model: nn.Module, config: QuantizationConfig) -> nn.Module:
    """Replace, in place, every linear layer of `model` (projections, LM head, task heads)
    by a `QuantizedLinear`, and a token embedding tied to the LM head by a
    `QuantizedEmbedding` reading the head's matrix; returns `model` (in eval mode).

    What stays floating point: layer norms, biases, the position embedding, an untied token
    embedding, and the layers named in `config.modules_to_not_convert`."""
    if getattr(model, "quantization_config", None) is not None:
        raise ValueError("this model is already quantized")
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    lm_head = getattr(model, "lm_head", None)
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    tie = (
        tied
        and isinstance(lm_head, nn.Linear)
        and isinstance(embedding, nn.Embedding)
        and lm_head.weight is embedding.weight
        and not config.skips("lm_head")
    )
    replaced: dict[int, QuantizedLinear] = {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module._modules.items()):
            if child is None or not _is_plain_linear(child):
                continue
            full = f"{name}.{child_name}" if name else child_name
            if config.skips(full) or child.weight.dim() != 2:
                continue
            q = replaced.get(id(child))
            if q is None:
                q = replaced[id(child)] = QuantizedLinear.from_linear(child, config)
            module._modules[child_name] = q
    if tie:
        head = model.lm_head
        backbone = model.backbone
        backbone.wte = QuantizedEmbedding(head, embedding.padding_idx, embedding.weight.dtype)
    model.__dict__["quantization_config"] = config
    return model.eval()


def is_quantized(model: nn.Module) -> bool:
    return getattr(model, "quantization_config", None) is not None


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer the model holds (tied ones once)."""
    seen: dict[int, torch.Tensor] = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen.setdefault(t.data_ptr(), t)
    return sum(t.numel() * t.element_size() for t in seen.values())
