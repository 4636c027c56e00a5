"""Quantized weight matrices: quantize, dequantize, and the in-memory / file layouts.

int8 ("channel"): `q [out, in]` int8 in [-127, 127] and one fp32 scale per output row,
`scale = max|w_row| / 127`, `w ~ q * scale`. The kernel sums `q * x` over a row and
multiplies by the scale once.

int4 ("group"): symmetric, one fp32 scale per `group_size` inputs of a row
(`scale = max|w_group| / 7`, `q` in [-8, 7]); the last group of a row may be shorter (the
bundled default model is 120 wide: groups of 32 are 32, 32, 32, 24). In memory two
signed nibbles share a byte, laid out for the kernel (`pack_int4`): in each block of 16
inputs, byte j holds input j in its low nibble and input j + 8 in its high nibble, so one
8-byte load sign-extended to eight int32 lanes gives inputs 0-7 (`(v << 28) >> 28`) and
8-15 (`v >> 4`) with no shuffles. Inputs past the last whole block of 16 (8 of them for a
width of 120) are packed in order, two per byte (low nibble first). Files use
compressed-tensors' `pack_to_int32` instead (`to_compressed_int4` / `from_compressed_int4`):
eight values per int32, value i at bits 4i, stored as `q + 8`.
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


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Signed int4 values `q [out, in]` (int8 storage) -> the kernel layout `[out, in / 2]`
    uint8 (see the module docstring)."""
    out, inp = q.shape
    whole = inp - inp % 16
    nib = (q.to(torch.int16) & 0xF).to(torch.uint8)
    blocks = nib[:, :whole].reshape(out, whole // 16, 2, 8)
    body = (blocks[:, :, 0, :] | (blocks[:, :, 1, :] << 4)).reshape(out, whole // 2)
    tail = nib[:, whole:].reshape(out, -1, 2)
    rest = (tail[:, :, 0] | (tail[:, :, 1] << 4)).reshape(out, -1)
    return torch.cat([body, rest], dim=1).contiguous()


def unpack_int4(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """The kernel layout -> signed int4 values `[out, in]` (int8)."""
    out = packed.shape[0]
    whole = in_features - in_features % 16
    p = packed.view(torch.int8)
    lo, hi = torch.bitwise_right_shift(torch.bitwise_left_shift(p, 4), 4), p >> 4
    nb = whole // 2
    body = torch.cat([lo[:, :nb].reshape(out, -1, 8), hi[:, :nb].reshape(out, -1, 8)], dim=2)
    if nb == packed.shape[1]:
        return body.reshape(out, whole)
    tail = torch.stack([lo[:, nb:], hi[:, nb:]], dim=2).reshape(out, -1)
    return torch.cat([body.reshape(out, whole), tail], dim=1)


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
