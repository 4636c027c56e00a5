"""Quantized weight matrices: quantize, dequantize, and the in-memory / file layouts.

int8 ("channel"): `q [out, in]` int8 in [-127, 127] and one fp32 scale per output row,
`scale = max|w_row| / 127`, `w ~ q * scale`. The kernel sums `q * x` over a row and
multiplies by the scale once.

int4 ("group"): symmetric, one fp32 scale per `group_size` inputs of a row
(`scale = max|w_group| / 7`, `q` in [-8, 7]); the last group of a row may be shorter (the
bundled default model is 120 wide: groups of 32 are 32, 32, 32, 24). In memory (`pack_int4`,
`[out, in / 2]` uint8, one row after another) nibbles are unsigned, `q + 8`, and ordered
for the kernel's `vpdpbusd` (native/kernels.c, "int4 weights"): a row's groups are
cut into blocks of 16 groups (the last block may have fewer); a block is `group_size / 8`
chunks, and chunk t holds 4 bytes for each group l of the block that has more than 8t
inputs, at bytes 4l..4l+3: byte c has input 8t + c of group l in its low nibble and input
8t + 4 + c in its high one. So one 64-byte load is 128 weights in which each 4-byte lane
belongs to one group: a lane sums a whole group, and the 16 group scales of a block apply
once, with one load. The layout depends on `group_size` (`_int4_order`); it is internal:
files use compressed-tensors' `pack_to_int32` instead (`to_compressed_int4` /
`from_compressed_int4`): eight values per int32, value i at bits 4i, stored as `q + 8`.
"""

from __future__ import annotations

import torch

INT8_MAX = 127
INT4_MAX = 7  # (levels -8..7; scales map the largest magnitude to 7)
DEFAULT_GROUP_SIZE = 32


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(q [out, in] int8, scale [out] fp32)`: symmetric, one scale per output row."""
    w = weight.detach().float()
    top = w.abs().amax(dim=1)
    scale = torch.where(top > 0, top / INT8_MAX, torch.ones_like(top))
    q = torch.round(w / scale[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float()[:, None]


def groups(in_features: int, group_size: int) -> int:
    return -(-in_features // group_size)


def check_int4_shape(in_features: int, group_size: int, name: str = "weight") -> None:
    if group_size <= 0 or group_size % 16:
        raise ValueError(
            f"int4 group_size={group_size}: must be a positive multiple of 16 (e.g. 32, 64, 128)"
        )
    if in_features % 8:
        raise ValueError(
            f"{name}: int4 needs the input width to be a multiple of 8, got {in_features}; "
            "quantize this model with quantization='int8'"
        )


def quantize_int4_values(
    weight: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(q [out, in] int8 in [-8, 7], scale [out, groups] fp32)`, unpacked."""
    w = weight.detach().float()
    out, inp = w.shape
    check_int4_shape(inp, group_size)
    n = groups(inp, group_size)
    pad = n * group_size - inp
    padded = torch.nn.functional.pad(w, (0, pad)).view(out, n, group_size)
    top = padded.abs().amax(dim=2)
    scale = torch.where(top > 0, top / INT4_MAX, torch.ones_like(top))
    q = torch.round(padded / scale[:, :, None]).clamp_(-8, INT4_MAX).to(torch.int8)
    return q.view(out, n * group_size)[:, :inp].contiguous(), scale.contiguous()


def expand_group_scales(scale: torch.Tensor, in_features: int, group_size: int) -> torch.Tensor:
    return scale.float().repeat_interleave(group_size, dim=1)[:, :in_features]


def dequantize_int4_values(q: torch.Tensor, scale: torch.Tensor, group_size: int) -> torch.Tensor:
    return q.float() * expand_group_scales(scale, q.shape[1], group_size)


# (a plain dict, not functools.lru_cache: a compiled step traces `unpack_int4`, and dynamo
# reads a dict entry as a constant where it would trace the cached function's body)
_ORDERS: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}


def _int4_order(in_features: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(order, inverse)` for the kernel layout of a row: nibble 2j (low) and 2j + 1 (high)
    of byte j hold inputs `order[2j]` and `order[2j + 1]`; `inverse` maps back."""
    key = (in_features, group_size)
    if key not in _ORDERS:
        _ORDERS[key] = _build_int4_order(in_features, group_size)
    return _ORDERS[key]


def _build_int4_order(in_features: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    check_int4_shape(in_features, group_size)
    ng = groups(in_features, group_size)
    last = in_features - (ng - 1) * group_size
    order: list[int] = []
    for g0 in range(0, ng, 16):
        count = min(16, ng - g0)
        for t in range(group_size // 8):
            lanes = count if g0 + count < ng or 8 * t < last else count - 1
            for lane in range(lanes):
                base = (g0 + lane) * group_size + 8 * t
                for c in range(4):
                    order += [base + c, base + 4 + c]
    index = torch.tensor(order, dtype=torch.int64)
    assert index.numel() == in_features
    return index, torch.argsort(index)


def pack_int4(q: torch.Tensor, group_size: int) -> torch.Tensor:
    """Signed int4 values `q [out, in]` (int8 storage) -> the kernel layout `[out, in / 2]`
    uint8 for groups of `group_size` (see the module docstring)."""
    order, _ = _int4_order(q.shape[1], group_size)
    u = (q.to(torch.int16) + 8).to(torch.uint8)[:, order.to(q.device)]
    return (u[:, 0::2] | (u[:, 1::2] << 4)).contiguous()


def unpack_int4(packed: torch.Tensor, in_features: int, group_size: int) -> torch.Tensor:
    """The kernel layout (groups of `group_size`) -> signed int4 values `[out, in]` (int8)."""
    _, inverse = _int4_order(in_features, group_size)
    nibbles = torch.stack([packed & 15, packed >> 4], dim=2).reshape(packed.shape[0], -1)
    return (nibbles[:, inverse.to(packed.device)].to(torch.int8) - 8).contiguous()


def to_compressed_int4(q: torch.Tensor) -> torch.Tensor:
    """Signed int4 values `[out, in]` -> compressed-tensors' `weight_packed [out, in / 8]`
    int32 (value i of each word at bits 4i, stored as q + 8)."""
    out, inp = q.shape
    u = (q.to(torch.int64) + 8).view(out, inp // 8, 8)
    shifts = torch.arange(8, dtype=torch.int64) * 4
    word = (u << shifts).sum(dim=2)
    return torch.where(word >= 2**31, word - 2**32, word).to(torch.int32)


def from_compressed_int4(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    word = packed.to(torch.int64) & 0xFFFFFFFF
    shifts = torch.arange(8, dtype=torch.int64) * 4
    u = (word[:, :, None] >> shifts) & 0xF
    return (u - 8).reshape(packed.shape[0], -1)[:, :in_features].to(torch.int8)
