"""The prompt GEMMs (`quantization/gemm.py`): both kernels of each compute the same numbers,
whichever this CPU picks."""

from __future__ import annotations

import pytest
import torch

from gpt2kit.quantization import gemm


@pytest.mark.parametrize("depth", [16, 768, 1040, 3072, 4100])
def test_int8_fp32_path_is_exact(depth):
    """sgemm on the integers as floats, in chunks of EXACT_FP32_DEPTH inputs, equals
    oneDNN's int32 sums bit for bit, at the worst case too (every product 127^2 of one
    sign: one sgemm of depth 3072 would pass 2^24 and round)."""
    torch.manual_seed(depth)
    q = torch.randint(-127, 128, (40, depth), dtype=torch.int8)
    w = torch.randint(-127, 128, (24, depth), dtype=torch.int8)
    q[0], w[0] = 127, 127  # (sum 127^2 * depth)
    q[1], w[1] = -127, 127
    ref = torch._int_mm(q, w.t())
    got = gemm._int8_matmul_fp32(q, w)
    assert got.dtype == torch.int32 and torch.equal(got, ref)
    assert int(got[0, 0]) == 127 * 127 * depth
    assert torch.equal(gemm.int8_matmul(q, w), ref)


def test_bf16_fp32_path_matches_the_bf16_gemm(monkeypatch):
    """Without bf16 units: bf16 values widened to fp32 and multiplied by sgemm (exact
    products, fp32 sums), rounded to bf16, against oneDNN's bf16 GEMM: equal up to fp32
    summation order, i.e. the bf16 outputs at most one bf16 step apart."""
    torch.manual_seed(0)
    x, w = torch.randn(64, 768), torch.randn(300, 768)
    ref = torch.nn.functional.linear(x.bfloat16(), w.bfloat16())
    monkeypatch.setattr(gemm, "has_bf16_dot", lambda: False)
    got = gemm.bf16_linear(x, w)
    assert got.dtype == torch.bfloat16 and got.shape == ref.shape
    exact = x.bfloat16().double() @ w.bfloat16().double().t()
    step = exact.abs() * 2.0**-8 + 1e-30  # one bf16 ulp (8-bit significand) or less
    assert ((got.double() - exact).abs() <= step).all()
    assert ((ref.double() - exact).abs() <= step).all()
    assert (got != ref).float().mean() < 0.02  # (ties of summation order only)


def test_cpu_flags_decide():
    flags = gemm._cpu_flags()
    if flags is None:
        assert gemm.has_int8_dot() and gemm.has_bf16_dot()
    else:
        assert gemm.has_int8_dot() == bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
