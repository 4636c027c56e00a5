"""The two low-precision GEMMs of quantized prompts, each on the fastest kernel this CPU has
for the same numbers.

- `int8_matmul`: exact int32 sums of int8 x int8 (`input_activations="int8"`). oneDNN's
  int8 GEMM (`torch._int_mm`) is fast where the CPU has integer dot instructions (VNNI,
  AMX); without them it is emulated: 163 ms for 128 x 768 -> 3072 on a 2-core Zen 1 EPYC
  (AVX2 only), where fp32 sgemm took 12 ms. There the same sums come from sgemm on the
  integers as floats, exact (below).
- `bf16_linear`: `bf16(x) @ bf16(w).T` with fp32 accumulation, rounded to bf16
  (`input_activations="bfloat16"`). Without bf16 dot units (AVX512-BF16, AMX) oneDNN
  emulates it: 58 ms for the same product there. A product of two bf16 values is exact in
  fp32 (8-bit significands), so sgemm on the bf16 values widened to fp32 computes the same
  sums up to fp32 summation order, then rounded to bf16 as the bf16 GEMM's output is.

Which CPU has what: the flags of /proc/cpuinfo on x86 Linux. Anywhere else (other
systems, ARM, GPUs) the oneDNN / CUDA kernels are used, as before this module.
"""

from __future__ import annotations

import functools
import platform

import torch
import torch.nn.functional as F

# fp32 sums of integer products are exact while every partial sum stays below 2^24: with
# |q| <= 127 that holds for any summation order up to this depth (1040 * 127^2 < 2^24).
# Deeper products are summed in chunks of this many inputs, the chunks added in int32.
EXACT_FP32_DEPTH = 1024


@functools.cache
def _cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags on x86 Linux; None where they are not known."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def has_int8_dot() -> bool:
    """Whether this CPU multiplies int8 in hardware dot instructions (oneDNN's `_int_mm`
    is fast); True where the flags are unknown."""
    flags = _cpu_flags()
    return flags is None or bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def has_bf16_dot() -> bool:
    """Whether this CPU multiplies bf16 in hardware (oneDNN's bf16 GEMM is fast); True
    where the flags are unknown."""
    flags = _cpu_flags()
    return flags is None or bool(flags & {"avx512_bf16", "amx_bf16"})


def int8_matmul(q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`q [rows, in] int8 @ w [out, in].T` int8 as exact int32 sums `[rows, out]`."""
    if q.device.type == "cpu":
        if has_int8_dot():
            # (oneDNN's int8 GEMM, any shape. `w.t()` is a view: measured as fast as a
            # [in, out] copy, none kept)
            return torch._int_mm(q, w.t())
        return _int8_matmul_fp32(q, w)
    if q.shape[0] > 16 and q.shape[1] % 8 == 0 and w.shape[0] % 8 == 0 and q.shape[1] >= 16:
        return torch._int_mm(q, w.t())  # (CUDA: within its shape rules)
    return _int8_matmul_fp32(q, w)


def _int8_matmul_fp32(q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`int8_matmul` through fp32 GEMMs of depth <= EXACT_FP32_DEPTH: every sum exact."""
    depth = q.shape[1]
    acc: torch.Tensor | None = None
    for k0 in range(0, max(depth, 1), EXACT_FP32_DEPTH):
        k = slice(k0, k0 + EXACT_FP32_DEPTH)
        part = (q[:, k].float() @ w[:, k].float().t()).to(torch.int32)
        acc = part if acc is None else acc.add_(part)
    assert acc is not None
    return acc


def bf16_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`F.linear(bf16(x), bf16(w))` (no bias): fp32 accumulation, the result rounded to
    bf16 and returned as bf16."""
    if x.device.type != "cpu" or has_bf16_dot():
        return F.linear(x.to(torch.bfloat16), w.to(torch.bfloat16))
    xb = x.to(torch.bfloat16).float()
    wb = w.to(torch.bfloat16).float()
    return F.linear(xb, wb).to(torch.bfloat16)
