"""The prompt side of quantized inference (`QuantizedLinear.forward` / `prompt_product` and
the decoder's prompt path, docs/quantization.md "Prompts"): products of more than
`ACTIVATION_ROWS` rows with `input_activations` "int8" (dynamic per-token int8 x int8
weights, `torch._int_mm`), "bfloat16" (bf16 blocks) or None (fp32, weight-only).

Tolerances are derived, not tuned:
- int8 against its own definition (integer sums in int64, scaled in float64): fp32
  rounding of the scaling only (rtol 1e-6);
- int8 against the fp32 weight-only product: rounding each input to a multiple of its
  row's scale `sx` moves it by at most `sx / 2`, so an output moves by at most
  `sx / 2 * sum_k |w_nk|` (plus fp32 summation error);
- bf16 against the fp32 weight-only product: each of x and w is rounded to 8 significant
  bits (relative error <= 2^-9 each), the output to bf16 (<= 2^-9 of |y|), so
  `|dy| <= 2^-8 (|x| @ |w|^T) + 2^-8 |y|`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from gpt2kit import GPT2LMHeadModel, decode, native
from gpt2kit.config import GPT2Config
from gpt2kit.nn.cache import KVCache
from gpt2kit.quantization import QuantizationConfig, QuantizedLinear, quantize_model, resolve
from gpt2kit.quantization.config import from_compressed_tensors, to_compressed_tensors
from gpt2kit.quantization.modules import (
    ACTIVATION_ROWS,
    prompt_product,
    quantize_activations,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_quant import int4_kernel_numerics  # noqa: E402

needs_kernel = pytest.mark.skipif(native.load() is None, reason="no C compiler: no native kernels")

INT8 = QuantizationConfig(bits=8)  # input_activations "int8" (the default)
INT4 = QuantizationConfig(bits=4)  # "bfloat16" (the default)
SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768), (120, 77), (40, 360)]


def _layer(inp: int, out: int, config: QuantizationConfig, seed: int = 0) -> QuantizedLinear:
    torch.manual_seed(seed)
    return QuantizedLinear.from_linear(torch.nn.Linear(inp, out), config)


def _x(rows: int, inp: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, inp, generator=g)
    x[:, 3] *= 20  # (an outlier channel, as GPT-2's residual stream has)
    return x


def _weight_only(q: QuantizedLinear, x: torch.Tensor) -> torch.Tensor:
    y = x.double() @ q.dequantize().double().T
    return y + q.bias.double() if q.bias is not None else y


def test_defaults_and_names():
    assert INT8.input_activations == "int8" and INT4.input_activations == "bfloat16"
    assert resolve("int8") == resolve("w8a8") == INT8
    assert resolve("w8a16").input_activations == "bfloat16"
    assert resolve("w4a16") == INT4
    assert QuantizationConfig(bits=8, input_activations=None).input_activations is None
    assert (
        resolve(quantization_config={"bits": 8, "input_activations": None}).input_activations
        is None
    )
    with pytest.raises(ValueError, match="int8 activations need int8 weights"):
        QuantizationConfig(bits=4, input_activations="int8")
    with pytest.raises(ValueError, match="input_activations='fp8'"):
        QuantizationConfig(input_activations="fp8")


def test_compressed_tensors_names_the_activation_scheme():
    d = to_compressed_tensors(INT8)
    acts = d["config_groups"]["group_0"]["input_activations"]
    assert acts["num_bits"] == 8 and acts["strategy"] == "token" and acts["dynamic"] is True
    assert from_compressed_tensors(json.loads(json.dumps(d))) == INT8
    # weight-only schemes (what llm-compressor writes as W8A16 / W4A16): 16-bit activations
    for config in (QuantizationConfig(bits=8, input_activations="bfloat16"), INT4):
        d = to_compressed_tensors(config)
        assert d["config_groups"]["group_0"]["input_activations"] is None
        assert from_compressed_tensors(d) == config
    static = to_compressed_tensors(INT8)
    static["config_groups"]["group_0"]["input_activations"]["dynamic"] = False
    with pytest.raises(ValueError, match="activation quantization"):
        from_compressed_tensors(static)


def test_quantize_activations_rounds_each_row():
    x = _x(40, 120)
    x[5] = 0
    q, s = quantize_activations(x)
    assert q.dtype == torch.int8 and s.shape == (40, 1)
    assert int(q.abs().max()) == 127 and torch.equal(q[5], torch.zeros_like(q[5]))
    assert ((q.float() * s - x).abs() <= s / 2 + 1e-6 * x.abs()).all()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("rows", [33, 128, 1024])
def test_int8_activations_equal_their_definition_and_bound(shape, rows):
    inp, out = shape
    if rows == 1024 and inp * out > 768 * 768:
        pytest.skip("1024 rows at the small shapes (float64 reference time)")
    layer, x = _layer(inp, out, INT8), _x(rows, inp)
    with torch.no_grad():
        y = layer(x)
    # definition: exact integer sums, scaled
    xq, sx = quantize_activations(x)
    exact = (xq.long() @ layer.qweight.long().T).double()
    want = exact * sx.double() * layer.weight_scale.double() + layer.bias.double()
    torch.testing.assert_close(y.double(), want, rtol=1e-6, atol=1e-6)
    # against the weight-only product: at most half a step of each input
    ref = _weight_only(layer, x)
    bound = sx.double() / 2 * layer.dequantize().double().abs().sum(1) + 1e-4
    assert ((y.double() - ref).abs() <= bound).all()


@pytest.mark.parametrize("config", [INT4, QuantizationConfig(bits=8, input_activations="bfloat16")])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("rows", [33, 128])
def test_bf16_blocks_within_the_rounding_bound(config, shape, rows):
    inp, out = shape
    layer, x = _layer(inp, out, config), _x(rows, inp)
    with torch.no_grad():
        y = layer(x)
    ref = _weight_only(layer, x)
    scale = x.double().abs() @ layer.dequantize().double().abs().T
    assert ((y.double() - ref).abs() <= 2**-8 * (scale + ref.abs()) + 1e-5).all()


def test_lm_head_blocks_in_bf16():
    """More than BLOCK_ROWS outputs: the bf16 blocks are concatenated in order."""
    layer, x = _layer(64, 5000, INT4), _x(40, 64)
    with torch.no_grad():
        y = layer(x)
    ref = _weight_only(layer, x)
    scale = x.double().abs() @ layer.dequantize().double().abs().T
    assert ((y.double() - ref).abs() <= 2**-8 * (scale + ref.abs()) + 1e-5).all()


@pytest.mark.parametrize("config", [INT8, INT4], ids=["int8", "int4"])
def test_few_rows_empty_and_edges_keep_fp32_activations(config):
    layer = _layer(768, 768, config)
    with torch.no_grad():
        for rows in (0, 1, ACTIVATION_ROWS):
            x = _x(rows, 768)
            torch.testing.assert_close(
                layer(x).double(), _weight_only(layer, x), rtol=1e-5, atol=1e-5
            )
        # 33 rows: quantized; an all-zero row gives the bias, a NaN row NaN (that row only)
        x = _x(ACTIVATION_ROWS + 1, 768)
        x[0], x[1, 7] = 0, float("nan")
        y = layer(x)
        assert layer.prompt_numerics(x) == config.input_activations
        torch.testing.assert_close(y[0], layer.bias, rtol=0, atol=0 if config.bits == 8 else 1e-2)
        assert y[1].isnan().all() and not y[2:].isnan().any()
        # batch dims: rows counted over all of them
        x3 = _x(3 * 20, 768).view(3, 20, 768)
        assert layer.prompt_numerics(x3) is not None
        torch.testing.assert_close(layer(x3).view(60, 768), layer(x3.view(60, 768)))


def test_weight_only_and_autograd_use_fp32_activations():
    layer = _layer(120, 77, QuantizationConfig(bits=8, input_activations=None))
    x = _x(64, 120)
    with torch.no_grad():
        torch.testing.assert_close(layer(x).double(), _weight_only(layer, x), rtol=1e-5, atol=1e-5)
    layer = _layer(120, 77, INT8)
    x.requires_grad_(True)
    y = layer(x)  # (rounding has no gradient: the weight-only product, differentiable)
    y.sum().backward()
    torch.testing.assert_close(x.grad, layer.dequantize().sum(0).expand(64, 120))


@needs_kernel
@pytest.mark.parametrize("rows, n", [(33, 768), (128, 3072), (40, 121), (1, 7)])
def test_native_rounding_and_scaling_equal_the_pytorch_ops(rows, n):
    """The decoder's one-pass kernels give `prompt_product`'s values (NaN / inf rows too)."""
    x = _x(rows, n) * 3
    x[0, 1] = float("nan")
    if rows > 2:
        x[1], x[2, 0] = 0, float("inf")
    q, s = native.quantize_rows(x)
    q2, s2 = quantize_activations(x)
    torch.testing.assert_close(s, s2, rtol=0, atol=0, equal_nan=True)
    finite = s2[:, 0].isfinite()
    assert torch.equal(q[finite], q2[finite])
    acc = torch.randint(-(10**6), 10**6, (rows, 64), dtype=torch.int32)
    sw, b = torch.rand(64), torch.randn(64)
    y = acc.float().mul_(sw)
    torch.testing.assert_close(
        native.scale_rows(acc, s2, sw, b), torch.addcmul(b, y, s2), equal_nan=True
    )
    torch.testing.assert_close(native.scale_rows(acc, s2, sw, None), y * s2, equal_nan=True)


def _tiny(n_embd: int, config: QuantizationConfig) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=4, n_embd=n_embd, vocab_size=300, n_positions=1100)
    return quantize_model(GPT2LMHeadModel(cfg).eval(), config)


@needs_kernel
@pytest.mark.parametrize("config", [INT8, INT4, QuantizationConfig(bits=8, input_activations=None)])
@pytest.mark.parametrize("n_embd, length", [(120, 33), (48, 100), (64, 1024)])
def test_decoder_prompt_step_equals_module_path(config, n_embd, length):
    """The prompt step through `CPUDecoder` (its `_qlinear` for every product) gives the
    module forward's logits: evaluation and generation agree product by product (both
    with `logits_to_keep=1`: the LM head then multiplies one row, with fp32 activations)."""
    if config.bits == 4 and n_embd % 8:
        pytest.skip("int4 needs widths that are multiples of 8")
    model = _tiny(n_embd, config)
    ids = torch.randint(0, 300, (1, length), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        step = decode.cpu_decoder(model, 1)
        assert step is not None
        fast = step(input_ids=ids, past_key_values=KVCache(2), use_cache=True, logits_to_keep=1)
        with int4_kernel_numerics(model):  # (int4: the one-row LM head's int8 rounding)
            ref = model(input_ids=ids, past_key_values=KVCache(2), use_cache=True, logits_to_keep=1)
        ref = ref.logits
    # (the prompt's products agree to fp32 rounding; the one-row LM head product differs by
    # the decoder's int16 activation rounding of int8 weights where the CPU has VNNI: |err|
    # <= max|x| / 65534 * sum|w|, ~3e-5 here, see tests/test_quant.py; int4 rounds that row
    # to int8, and the reference does the same: `int4_kernel_numerics`)
    tol = 1e-4 if native.quantized_activations() else 1e-5
    torch.testing.assert_close(fast.logits, ref, rtol=tol, atol=tol)


@needs_kernel
def test_generate_prompt_step_keeps_one_position_of_logits():
    """`generate` asks the prompt step for the last position's logits only
    (`logits_to_keep=1`): the LM head multiplies one row, not the prompt's 128."""
    model = _tiny(64, INT8)
    seen: list[int] = []
    hook = model.lm_head.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[-2]))
    try:
        with torch.no_grad():
            model.generate(torch.randint(0, 300, (1, 128)), max_new_tokens=2, do_sample=False)
            with decode.disabled():
                model.generate(torch.randint(0, 300, (1, 128)), max_new_tokens=2, do_sample=False)
    finally:
        hook.remove()
    assert seen and all(n == 1 for n in seen), seen


def test_from_pretrained_input_activations(tmp_path):
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=4, n_embd=64, vocab_size=300, n_positions=64)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "fp32")
    m = GPT2LMHeadModel.from_pretrained(
        tmp_path / "fp32", quantization_config=QuantizationConfig(input_activations=None)
    )
    assert m.lm_head.input_activations is None
    m = GPT2LMHeadModel.from_pretrained(tmp_path / "fp32", quantization="int8")
    assert m.lm_head.input_activations == "int8"
    m.save_pretrained(tmp_path / "int8")
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path / "int8")
    assert loaded.quantization_config == m.quantization_config
    # the stored integers, multiplied as asked
    weight_only = GPT2LMHeadModel.from_pretrained(
        tmp_path / "int8", quantization_config=QuantizationConfig(input_activations=None)
    )
    assert weight_only.lm_head.input_activations is None
    assert torch.equal(weight_only.lm_head.qweight, loaded.lm_head.qweight)
    ids = torch.randint(0, 300, (1, 40))
    with torch.no_grad():
        a, b = loaded(ids).logits, weight_only(ids).logits
    assert not torch.equal(a, b)
    torch.testing.assert_close(a, b, rtol=0.05, atol=0.05)
    assert prompt_product(loaded.lm_head, torch.zeros(40, 64)).shape == (40, 300)
