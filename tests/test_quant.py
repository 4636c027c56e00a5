"""Weight-only quantization (`gpt2kit.quantization`, docs/quantization.md).

- the native int8 / int4 products equal a plain PyTorch dequantize-then-matmul (to fp32
  summation order), tiny and at GPT-2 small's shapes (768 / 2304 / 3072 / 50257);
- the layouts round-trip (kernel layout, compressed-tensors' int32 packing);
- a quantized model's batch-1 native step equals its module path, logits and tokens;
- loading: `quantization=` / `quantization_config=`, unknown values are errors, a
  converted folder loads quantized with the same integers (no second rounding), tied
  embeddings share the LM head's quantized matrix;
- quality of the bundled default model on held-out Tiny Shakespeare (`test_quant_quality.py`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt2kit import GPT2LMHeadModel, decode, native
from gpt2kit.config import GPT2Config
from gpt2kit.nn.cache import KVCache
from gpt2kit.quantization import (
    QuantizationConfig,
    QuantizedEmbedding,
    QuantizedLinear,
    quantize_model,
    resolve,
    weight_bytes,
)
from gpt2kit.quantization import tensor as qt
from gpt2kit.quantization.modules import ACTIVATION_ROWS, quantize_activations

needs_kernel = pytest.mark.skipif(native.load() is None, reason="no C compiler: no native kernels")

CONFIGS = [QuantizationConfig(bits=8), QuantizationConfig(bits=4, group_size=32)]
CONFIGS += [QuantizationConfig(bits=4, group_size=64)]


def _reference(q: QuantizedLinear, x: torch.Tensor) -> torch.Tensor:
    """Dequantize-then-matmul in float64 (what both fp32 paths approximate)."""
    y = x.double() @ q.dequantize().double().T
    return y + q.bias.double() if q.bias is not None else y


def _tol(in_features: int) -> float:
    return 2e-6 * (in_features / 768) ** 0.5 * 4


def int4_int8_activations() -> bool:
    """Whether the native int4 products round x to int8 (kernels.c's vpdpbusd kernel, CPUs
    with VNNI); else they multiply fp32 x."""
    return native.load() is not None and native.quantized_activations() != "fp32"


def _assert_kernel_close(y: torch.Tensor, q: QuantizedLinear, x: torch.Tensor) -> None:
    """The native product against `_reference` (fp32 activations), elementwise, within the
    bound of the kernel's activation rounding, plus fp32 summation error (`_tol`, and rtol
    1e-5); for int4 with int8 activations also against its exact definition.

    int8 weights with VNNI (kernels.c): each row of x rounded to int16 once (scale
    max|x_i| / 32767), each input off by at most max|x_i| / 65534, so output (i, r) by at
    most that times sum_k |W[r, k]| (the dequantized row).

    int4 weights with VNNI: each row of x rounded to int8 as `quantize_activations` does
    (s = max|x_i| / 127, xq = rint(fl(x / s))). The kernel must equal xq * s times the int4
    weights (the integer sums are exact; only fp32 summation over groups differs). Against
    fp32 x: |x / s - fl(x / s)| <= 2^-24 * 127.0001 < 7.6e-6, so |x_k - s xq_k| <= s (0.5 +
    7.6e-6) <= max|x_i| / 254 * (1 + 2e-5) (s itself carries a 2^-24 relative rounding), and
    output (i, r) is off by at most max|x_i| / 254 * (1 + 1e-4) * sum_k |W[r, k]|.

    Without VNNI neither rounding happens, and the bounds hold all the same."""
    ref = _reference(q, x)
    w = q.dequantize().double()
    top = x.double().abs().amax(dim=-1, keepdim=True)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    if q.bits == 4 and int4_int8_activations():
        xq, sx = quantize_activations(x)
        exact = (xq.double() * sx.double()) @ w.T
        exact = exact + q.bias.double() if q.bias is not None else exact
        err = (y.double() - exact).abs()
        bound = _tol(x.shape[-1]) + 1e-5 * exact.abs()
        assert (err <= bound).all(), (
            f"vs definition, worst error / bound: {(err / bound).max():.3f}"
        )
        rounding = top / 254 * (1 + 1e-4) * w.abs().sum(dim=1)
    else:
        rounding = top / 65534 * w.abs().sum(dim=1)
    bound = rounding + _tol(x.shape[-1]) + 1e-5 * ref.abs()
    err = (y.double() - ref).abs()
    assert (err <= bound).all(), f"worst error / bound: {(err / bound).max().item():.3f}"


@contextlib.contextmanager
def int4_kernel_numerics(model: torch.nn.Module):
    """The native int4 products' definition on the module path: while active, every int4
    `QuantizedLinear`'s input of up to `ACTIVATION_ROWS` rows (those the native kernel
    multiplies) is rounded to int8 per row (`quantize_activations`) and scaled back, where
    the kernel does so (`int4_int8_activations`); else nothing changes."""

    def hook(module: QuantizedLinear, args: tuple) -> tuple | None:
        x = args[0]
        if module.bits != 4 or x.numel() > ACTIVATION_ROWS * x.shape[-1]:
            return None
        xq, sx = quantize_activations(x.reshape(-1, x.shape[-1]))
        return ((xq.float() * sx).view_as(x),)

    handles = []
    if int4_int8_activations():
        handles = [
            m.register_forward_pre_hook(hook)
            for m in model.modules()
            if isinstance(m, QuantizedLinear)
        ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# -- kernels ------------------------------------------------------------------------------------
@needs_kernel
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.method}-g{c.group_size}")
@pytest.mark.parametrize(
    "shape",
    [(40, 120), (33, 480), (7, 48), (2304, 768), (768, 768), (3072, 768), (768, 3072)],
)
@pytest.mark.parametrize("rows", [1, 2, 5, 8, 32])
def test_kernel_equals_dequantize_then_matmul(config, shape, rows):
    out, inp = shape
    torch.manual_seed(out + inp + rows)
    lin = torch.nn.Linear(inp, out)
    q = QuantizedLinear.from_linear(lin, config)
    x = torch.randn(rows, inp)
    y = native.qgemv(x, q.qweight, q.weight_scale, q.bits, q.group_size, inp, q.bias)
    ref = _reference(q, x)
    assert y.shape == (rows, out)
    _assert_kernel_close(y, q, x)
    # the module's own (blocked, PyTorch) path computes the same function
    torch.testing.assert_close(q(x).double(), ref, atol=_tol(inp), rtol=1e-5)


@needs_kernel
@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: c.method)
def test_kernel_lm_head_at_gpt2_small_vocab(config):
    torch.manual_seed(0)
    q = QuantizedLinear.from_linear(torch.nn.Linear(768, 50257, bias=False), config)
    for rows in (1, 3, 8):
        x = torch.randn(rows, 768)
        y = native.qgemv(x, q.qweight, q.weight_scale, q.bits, q.group_size, 768, None)
        _assert_kernel_close(y, q, x)


@needs_kernel
@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: c.method)
def test_kernel_int4_other_group_sizes_and_outliers(config):
    """Groups of 16 and 48 (16 mod 32: each half of a vector has its own scale in the int16
    kernel), and rows of x with one large outlier (the int16 scale follows max|x|)."""
    torch.manual_seed(3)
    configs = (
        [config]
        if config.bits == 8
        else [QuantizationConfig(bits=4, group_size=g) for g in (16, 48, 128)]
    )
    for cfg in configs:
        for out, inp in ((50, 96), (33, 208), (64, 768)):
            q = QuantizedLinear.from_linear(torch.nn.Linear(inp, out), cfg)
            x = torch.randn(3, inp)
            x[1, 5] = 300.0
            y = native.qgemv(x, q.qweight, q.weight_scale, q.bits, q.group_size, inp, q.bias)
            _assert_kernel_close(y, q, x)


@needs_kernel
@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: c.method)
def test_kernel_non_finite_rows(config):
    """A row of x holding inf or NaN cannot be rounded to int16: the product takes the fp32
    path, so the result is what it was before VNNI (and what the module path gives)."""
    torch.manual_seed(4)
    q = QuantizedLinear.from_linear(torch.nn.Linear(64, 40), config)
    x = torch.randn(3, 64)
    x[0, 3], x[2, 7] = float("inf"), float("nan")
    y = native.qgemv(x, q.qweight, q.weight_scale, q.bits, q.group_size, 64, q.bias)
    ref = torch.nn.functional.linear(x, q.dequantize(), q.bias)
    assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.isinf(), ref.isinf())
    finite = ref.isfinite()
    torch.testing.assert_close(y[finite], ref[finite], atol=_tol(64), rtol=1e-5)
    assert y[2].isnan().all() and not y[1].isnan().any()


# -- layouts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", [16, 32, 48, 128])
@pytest.mark.parametrize("inp", [8, 16, 24, 120, 256, 768, 1048, 3072])
def test_int4_layouts_round_trip(inp, group):
    q = torch.randint(-8, 8, (5, inp), dtype=torch.int8)
    assert torch.equal(qt.unpack_int4(qt.pack_int4(q, group), inp, group), q)
    packed = qt.to_compressed_int4(q)
    assert packed.dtype == torch.int32 and packed.shape == (5, inp // 8)
    assert torch.equal(qt.from_compressed_int4(packed, inp), q)
    # compressed-tensors' pack_to_int32: value i of a word at bits 4i, stored as q + 8
    word = int(packed[0, 0]) & 0xFFFFFFFF
    assert [(word >> (4 * i)) & 0xF for i in range(8)] == [int(v) + 8 for v in q[0, :8]]


def test_quantize_error_bounds():
    torch.manual_seed(0)
    w = torch.randn(64, 120)
    q, s = qt.quantize_int8(w)
    assert (qt.dequantize_int8(q, s) - w).abs().max() <= s.max() / 2 + 1e-7
    v, s4 = qt.quantize_int4_values(w, 32)
    assert s4.shape == (64, 4)  # 120 = 32 + 32 + 32 + 24
    err = (qt.dequantize_int4_values(v, s4, 32) - w).abs()
    assert (err <= qt.expand_group_scales(s4, 120, 32) / 2 + 1e-6).all()


# -- config -------------------------------------------------------------------------------------
def test_resolve_forms_and_errors():
    assert resolve("int8") == QuantizationConfig(bits=8)
    assert resolve("int4").group_size == qt.DEFAULT_GROUP_SIZE
    assert resolve(quantization_config={"bits": 4, "group_size": 64}).group_size == 64
    assert resolve(quantization_config=QuantizationConfig(bits=4, group_size=16)).bits == 4

    class TransformersStyle:
        def to_dict(self):
            return {"bits": 8}

    assert resolve(quantization_config=TransformersStyle()).bits == 8
    assert resolve() is None
    with pytest.raises(ValueError, match="int3"):
        resolve("int3")
    with pytest.raises(ValueError, match="not both"):
        resolve("int8", QuantizationConfig())
    with pytest.raises(ValueError, match="group_size"):
        QuantizationConfig(bits=4, group_size=20)
    with pytest.raises(ValueError, match="group_size"):
        QuantizationConfig(bits=8, group_size=32)
    with pytest.raises(ValueError, match="bnb"):
        resolve(quantization_config={"quant_method": "bnb"})
    with pytest.raises(ValueError, match="unknown field"):
        resolve(quantization_config={"bits": 8, "sym": True})


# -- models -------------------------------------------------------------------------------------
def _tiny(n_embd=48, vocab=300, seed=0, **kw) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_head=4, n_embd=n_embd, vocab_size=vocab, n_positions=64, **kw)
    return GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: c.method)
def test_quantized_model_structure_and_tied_embedding(config):
    model = quantize_model(_tiny(), config)
    linears = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    assert len(linears) == 2 * 4 + 1
    assert not any(type(m) in (torch.nn.Linear,) for m in model.modules())
    wte = model.transformer.wte
    assert isinstance(wte, QuantizedEmbedding) and wte.head is model.lm_head
    ids = torch.tensor([[0, 5, 299]])
    torch.testing.assert_close(wte(ids)[0], model.lm_head.dequantize()[ids[0]])
    # no float copy of the tied matrix anywhere
    assert all(p.numel() < 300 * 48 for p in model.parameters())


@needs_kernel
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.method}-g{c.group_size}")
@pytest.mark.parametrize("n_embd", [48, 120])
def test_native_step_equals_module_path(config, n_embd):
    model = quantize_model(_tiny(n_embd=n_embd), config)
    prompt = torch.tensor([[3, 14, 15, 92, 65]])
    # (int4: the module path with the kernel's int8 activation rounding, its definition)
    with torch.no_grad():
        fast = model.generate(prompt, max_new_tokens=12, do_sample=False)
        with decode.disabled(), int4_kernel_numerics(model):
            slow = model.generate(prompt, max_new_tokens=12, do_sample=False)
    assert torch.equal(fast, slow)
    # the whole-step kernel's logits against the module forward's, step by step
    from gpt2kit.decode.plan import lm_step

    home: dict = {}
    cache = KVCache(model.config.n_layer)
    ids = fast[0]
    with torch.no_grad():
        with int4_kernel_numerics(model):
            ref = model(ids[None]).logits[0]
        worst = []
        for t in range(ids.shape[0]):
            logits = lm_step(model, ids[None, t : t + 1], cache, home, {})
            assert logits is not None, "the quantized whole-step kernel did not run"
            worst.append(float((logits[0, 0] - ref[t]).abs().max()))
    # atol: the module path multiplies fp32 activations; the int8 kernel rounds each
    # product's input row to int16, <= max|x| / 65534 per input (see `_assert_kernel_close`):
    # measured up to 3.2e-5 here over 2 blocks and the head, where fp32 summation alone
    # stayed under 2e-5. int4: against its definition, the same int8 rounding on the module
    # path (`int4_kernel_numerics`). That rounding is discontinuous: where x / s of one
    # input lies within fp32 noise of a .5 tie, the two paths (whose x differ by ~1e-7:
    # native LayerNorm vs torch's) round it to neighbouring integers, one step s = max|x| /
    # 127 apart. Measured once (120 wide, g32, AVX2 build): position 14 of 17 at 1.2e-3, the
    # others <= 5e-7, and the next position exact again (the flip was past the cache). So
    # int4 allows one position within a few such steps; every other one is held to 1e-4.
    over = [t for t, e in enumerate(worst) if e > 1e-4]
    allowed = 1 if config.bits == 4 and int4_int8_activations() else 0
    assert len(over) <= allowed and max(worst) < 1e-2, f"per-position max |error|: {worst}"
    assert decode.held_bytes(model) == 0  # (the int8 / int4 buffers are read in place)


@needs_kernel
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.method}-g{c.group_size}")
def test_a_few_rows_whole_step_equals_the_decoders_modules(config, monkeypatch):
    """A batch's steps (4 rows at one position) in one native call: the same tokens and
    scores as the decoder's module path, whose products run the same kernels."""
    from gpt2kit.decode import plan

    model = quantize_model(_tiny(n_embd=120), config)
    prompts = torch.randint(0, 300, (4, 6), generator=torch.Generator().manual_seed(4))
    steps = []
    real = native.run_step
    monkeypatch.setattr(native, "run_step", lambda *a: steps.append(a[0].shape) or real(*a))

    def run():
        with torch.no_grad():
            out = model.generate(
                prompts, max_new_tokens=10, do_sample=False, output_scores=True,
                return_dict_in_generate=True,
            )  # fmt: skip
        return out.sequences, torch.stack(out.scores)

    fused, fused_scores = run()
    assert steps == [(4,)] * 9  # (every step after the prompt's)
    monkeypatch.setattr(plan, "MAX_STEP_ROWS", 0)  # (the module path with the kernels)
    modules, module_scores = run()
    assert len(steps) == 9 and torch.equal(fused, modules)
    # (int4: the int8 rounding of the products' inputs may flip near a tie, as above)
    tol = 1e-2 if config.bits == 4 and int4_int8_activations() else 1e-4
    torch.testing.assert_close(fused_scores, module_scores, rtol=0, atol=tol)


@needs_kernel
def test_few_rows_and_long_prompts_through_the_decoder():
    model = quantize_model(_tiny(n_embd=64), QuantizationConfig(bits=8))
    torch.manual_seed(1)
    prompts = torch.randint(0, 300, (3, 40))
    with torch.no_grad():
        fast = model.generate(prompts, max_new_tokens=6, do_sample=False)
        with decode.disabled():
            slow = model.generate(prompts, max_new_tokens=6, do_sample=False)
    assert torch.equal(fast, slow)


def test_from_pretrained_quantization_and_errors(tmp_path):
    _tiny(n_embd=64).save_pretrained(tmp_path / "fp32")
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "fp32", quantization="int8")
    assert model.quantization_config.bits == 8
    assert isinstance(model.lm_head, QuantizedLinear)
    m4 = GPT2LMHeadModel.from_pretrained(
        tmp_path / "fp32", quantization_config=QuantizationConfig(bits=4, group_size=16)
    )
    assert m4.lm_head.group_size == 16
    with pytest.raises(ValueError, match="int2"):
        GPT2LMHeadModel.from_pretrained(tmp_path / "fp32", quantization="int2")
    with pytest.raises(ValueError, match="load_in_8bit"):
        GPT2LMHeadModel.from_pretrained(tmp_path / "fp32", load_in_8bit=True)


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_converted_folder_loads_quantized_exactly(tmp_path, method):
    src = tmp_path / "fp32"
    _tiny(n_embd=64, vocab=1000).save_pretrained(src)
    dst = tmp_path / method
    run = subprocess.run(
        [sys.executable, "-m", "gpt2kit", "convert", str(src), str(dst), "--quantize", method],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    direct = GPT2LMHeadModel.from_pretrained(src, quantization=method)
    loaded = GPT2LMHeadModel.from_pretrained(dst)  # no keyword: the folder says so
    assert loaded.quantization_config == direct.quantization_config
    for (name, a), (_, b) in zip(direct.named_buffers(), loaded.named_buffers()):
        assert torch.equal(a, b), name
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, direct(ids).logits)
    import json

    qc = json.loads((dst / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors"
    fp32_bytes = (src / "model.safetensors").stat().st_size
    ratio = (dst / "model.safetensors").stat().st_size / fp32_bytes
    assert ratio < (0.30 if method == "int8" else 0.20), ratio
    other = "int4" if method == "int8" else "int8"
    with pytest.raises(ValueError, match="quantized as"):
        GPT2LMHeadModel.from_pretrained(dst, quantization=other)
    # saving the loaded model again writes the same tensors
    loaded.save_pretrained(tmp_path / "again")
    from safetensors.torch import load_file

    first, second = (
        load_file(dst / "model.safetensors"),
        load_file(tmp_path / "again" / "model.safetensors"),
    )
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_resident_weight_bytes():
    model = _tiny(n_embd=128, vocab=5000)
    fp32 = weight_bytes(model)
    int8 = weight_bytes(quantize_model(model, QuantizationConfig(bits=8)))
    assert int8 / fp32 < 0.30


@pytest.mark.slow
def test_gpt2_small_int8_folder_bytes(tmp_path):
    """The issue's budget: a 124M int8 folder is at most 40% of the fp32 folder's bytes."""
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(tmp_path / "fp32")
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "fp32", quantization="int8")
    model.save_pretrained(tmp_path / "int8")

    def size(p: Path) -> int:
        return sum(f.stat().st_size for f in p.iterdir())

    assert size(tmp_path / "int8") / size(tmp_path / "fp32") <= 0.40


@needs_kernel
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.method}-g{c.group_size}")
@pytest.mark.parametrize("shape", [(40, 120), (7, 48), (2304, 768), (768, 3072)])
def test_native_dequantize_equals_module(config, shape):
    """The prompt path's fp32 matrix (native.dequantize, then BLAS) is exactly q * s."""
    out, inp = shape
    torch.manual_seed(out)
    q = QuantizedLinear.from_linear(torch.nn.Linear(inp, out), config)
    w = native.dequantize(q.qweight, q.weight_scale, q.bits, q.group_size, inp)
    assert torch.equal(w, q.dequantize())


# -- the AVX2 build (no VNNI), on any x86-64 CPU with AVX2 --------------------------------------
_AVX2_RUN = """
import sys
from gpt2kit import native
native.FLAGS[native.FLAGS.index("-march=native")] = "-march=x86-64-v3"  # AVX2, FMA, no AVX-512
assert native.load() is not None and native.quantized_activations() == "int16 (AVX2, 256-bit)"
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", sys.argv[1], "-k", sys.argv[2]]))
"""


@pytest.mark.slow
@needs_kernel
def test_avx2_kernels_without_vnni(tmp_path):
    """The emulated-VNNI kernels (kernels.c, `QVNNI_EMULATED`: what AVX2 CPUs such as Zen 1-3
    run) built with `-march=x86-64-v3` in a fresh process and cache, through this file's
    kernel and whole-step tests: on a VNNI machine they would otherwise never run."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2 " not in flags or " bmi2 " not in flags or " movbe " not in flags:
        pytest.skip("not an x86-64-v3 CPU")
    env = {**os.environ, "GPT2KIT_CACHE": str(tmp_path)}
    tests = "kernel or native_step or few_rows"
    run = subprocess.run(
        [sys.executable, "-c", _AVX2_RUN, __file__, tests],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "[100%]" in run.stdout and "F" not in run.stdout.split("[100%]")[0]
