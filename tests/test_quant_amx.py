"""Intel AMX tiles for the int8 products of several rows (kernels.c, "AMX"), against the
kernels they stand in for on the same CPU: the W8A8 prompt product must equal
`torch._int_mm` + `scale_rows` bit for bit (both sums are exact int32), the few-row
int16-activation product must match the VNNI kernels within a few fp32 ulps of the sum
(one rounding where VNNI lane sums round a few times). Skipped on CPUs without AMX-INT8
(the VNNI kernels' own tests, test_quant.py, run there and here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from gpt2kit import native
from gpt2kit.quantization import QuantizationConfig, QuantizedLinear
from gpt2kit.quantization.gemm import int8_matmul

pytestmark = pytest.mark.skipif(
    native.load() is None or not native.amx(), reason="no AMX-INT8 tiles on this CPU / build"
)


@pytest.fixture
def vnni_too():
    """Yields a function running `fn` with the tiles off (then on again)."""

    def without_tiles(fn):
        native.set_amx(False)
        try:
            return fn()
        finally:
            assert native.set_amx(True)

    return without_tiles


@pytest.mark.parametrize(
    "rows,out,inp",
    [(128, 2304, 768), (33, 50, 128), (100, 77, 64), (40, 768, 3072), (1, 16, 64), (129, 97, 192)],
)
@pytest.mark.parametrize("bias", [True, False])
def test_w8a8_tiles_equal_int_mm_then_scale_rows(rows, out, inp, bias):
    torch.manual_seed(rows + out + inp)
    x = torch.randn(rows, inp) * 3
    q = torch.randint(-127, 128, (out, inp), dtype=torch.int8)
    sw = torch.rand(out) * 0.01
    b = torch.randn(out) if bias else None
    xq, sx = native.quantize_rows(x)
    y = native.w8a8_linear(xq, sx, q, sw, b)
    assert y is not None
    assert torch.equal(y, native.scale_rows(int8_matmul(xq, q), sx, sw, b))


def test_w8a8_tiles_decline_widths_they_cannot_tile():
    xq, sx = native.quantize_rows(torch.randn(40, 120))
    q = torch.randint(-127, 128, (30, 120), dtype=torch.int8)
    assert native.w8a8_linear(xq, sx, q, torch.ones(30), None) is None


@pytest.mark.parametrize(
    "rows,out,inp",
    [(4, 100, 64), (8, 2304, 768), (8, 768, 3072), (17, 333, 128), (32, 3072, 768), (5, 48, 192)],
)
def test_few_row_tiles_match_the_vnni_kernels(rows, out, inp, vnni_too):
    torch.manual_seed(rows * out)
    lin = QuantizedLinear.from_linear(torch.nn.Linear(inp, out), QuantizationConfig(bits=8))
    x = torch.randn(rows, inp)
    args = (lin.qweight, lin.weight_scale, 8, None, inp, lin.bias)
    tiles = native.qgemv(x, *args)
    vnni = vnni_too(lambda: native.qgemv(x, *args))
    # both from the same int16 activations and exact integer sums; the VNNI kernels round
    # the sum of 16 int32 lanes in fp32, the tiles once: a few ulps of sum |q s x|
    scale = (x.abs() @ lin.dequantize().abs().T).max()
    assert (tiles - vnni).abs().max() <= 8 * torch.finfo(torch.float32).eps * scale


def test_few_row_tiles_at_gpt2_small_vocab(vnni_too):
    """The LM head (50257 rows: 1570 blocks of 32 and a remainder per thread)."""
    torch.manual_seed(0)
    lin = QuantizedLinear.from_linear(
        torch.nn.Linear(768, 50257, bias=False), QuantizationConfig(bits=8)
    )
    args = (lin.qweight, lin.weight_scale, 8, None, 768, None)
    for rows in (4, 8, 16):
        x = torch.randn(rows, 768)
        tiles = native.qgemv(x, *args)
        vnni = vnni_too(lambda x=x: native.qgemv(x, *args))
        scale = (x.abs() @ lin.dequantize().abs().T).max()
        assert (tiles - vnni).abs().max() <= 8 * torch.finfo(torch.float32).eps * scale


def test_generation_with_and_without_tiles(vnni_too):
    """A quantized model's prompt (W8A8: the same values) and 8-row steps through the tiles."""
    from gpt2kit import GPT2Config, GPT2LMHeadModel
    from gpt2kit.quantization import quantize_model

    torch.manual_seed(0)
    config = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=320, n_positions=256)
    model = quantize_model(GPT2LMHeadModel(config).eval(), QuantizationConfig(bits=8))
    prompts = torch.randint(0, 320, (8, 40))

    def run():
        with torch.no_grad():
            out = model.generate(
                prompts, max_new_tokens=8, do_sample=False, output_scores=True,
                return_dict_in_generate=True,
            )  # fmt: skip
        return out.sequences, torch.stack(out.scores)

    (ids, scores), (ids0, scores0) = run(), vnni_too(run)
    assert torch.equal(ids, ids0)
    torch.testing.assert_close(scores, scores0, rtol=0, atol=1e-5)


def test_environment_turns_tiles_off():
    code = "from gpt2kit import native; native.load(); print(native.amx())"
    env = dict(os.environ, GPT2KIT_AMX="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
