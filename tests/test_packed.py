"""oneDNN-packed projection weights for batched CPU decoding (`gpt2kit.decode.packed`).

Batched `generate` on CPU has its decoder pack every projection once
(`DecodeWeights.prepare(rows > 1)`) for batches of more than `native.MAX_FP32_ROWS` rows,
or any batch without the native kernel; smaller batches multiply through the kernel on
the decoder's arena, packed copies or not. The ids stay those of `transformers` (the
batched parity tests in test_generation.py run through one path or the other). Here: the
packed product equals `F.linear`, the copies never reach the model (checkpoints, copies,
training), a changed weight is never read stale, and small batches take the kernel.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from gpt2kit import GPT2LMHeadModel, decode, native
from gpt2kit.decode import packed
from gpt2kit.decode.decoder import _held
from gpt2kit.decode.packed import PackedWeight, packing_available
from gpt2kit.decode.weights import projection_weights
from gpt2kit.generation import generate
from gpt2kit.nn.backbone import Linear
from harness import tiny_config

pytestmark = pytest.mark.skipif(not packing_available(), reason="no oneDNN linear ops")


def _packed(model):
    held = _held.get(model)
    return [] if held is None else [w for w, _ in held.packed.values()]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 8, 40])
def test_packed_product_equals_linear(bias, rows):
    torch.manual_seed(0)
    layer = Linear(48, 100, bias=bias)
    weight = PackedWeight(layer.weight, 8)
    x = torch.randn(rows, 48)
    with torch.no_grad():
        ours = packed.linear(x, weight, layer.bias)
    ref = F.linear(x, layer.weight, layer.bias)
    assert ours.shape == (rows, 100)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_batched_generate_packs_beside_the_model(tmp_path):
    model = GPT2LMHeadModel(tiny_config()).eval()
    ids = torch.randint(0, 98, (native.MAX_FP32_ROWS + 1, 5))  # more rows than the kernel takes
    out = generate(model, ids, max_new_tokens=4, eos_token_id=None)
    weights = projection_weights(model)
    assert len(_packed(model)) == len(weights) > 0
    assert not any("packed" in k for k in model.state_dict())
    with decode.disabled():
        assert torch.equal(generate(model, ids, max_new_tokens=4, eos_token_id=None), out)
    twin = copy.deepcopy(model)  # the copy packs again on its own first batched decode
    assert _packed(twin) == [] and torch.equal(
        generate(twin, ids, max_new_tokens=4, eos_token_id=None), out
    )
    model.save_pretrained(tmp_path / "m")
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path / "m")
    assert torch.equal(generate(loaded, ids, max_new_tokens=4, eos_token_id=None), out)
    # training in between: the packed copies are of the old values and are not read
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(ids[:2], labels=ids[:2]).loss.backward()
    opt.step()
    model.eval()
    trained = generate(model, ids, max_new_tokens=4, eos_token_id=None)
    with decode.disabled():
        assert torch.equal(generate(model, ids, max_new_tokens=4, eos_token_id=None), trained)
    held = _held[model]
    assert all(held.packed_for(w) is not None for w in weights)  # packed again
    again = dict(held.packed)
    generate(model, ids, max_new_tokens=2, eos_token_id=None)
    assert held.packed == again  # unchanged weights: the same packed copies
    decode.release(model)
    assert _packed(model) == []


def test_changed_weight_is_never_read_stale():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).eval()
    ids = torch.randint(0, 98, (native.MAX_FP32_ROWS + 1, 5))
    generate(model, ids, max_new_tokens=1, eos_token_id=None)
    held = _held[model]
    weight = model.transformer.h[0].attn.c_attn.weight
    assert held.packed_for(weight) is not None
    with torch.no_grad():
        weight.mul_(2.0)  # in place: same address, new version
    assert held.packed_for(weight) is None
    model.transformer.h[0].attn.c_proj.weight = torch.nn.Parameter(torch.randn(32, 32))
    assert held.packed_for(model.transformer.h[0].attn.c_proj.weight) is None  # replaced
    out = generate(model, ids, max_new_tokens=3, eos_token_id=None)
    with decode.disabled():
        assert torch.equal(generate(model, ids, max_new_tokens=3, eos_token_id=None), out)


def test_grad_mode_uses_the_ordinary_product():
    model = GPT2LMHeadModel(tiny_config()).eval()
    decoder = decode.cpu_decoder(model, native.MAX_FP32_ROWS + 1)
    layer = model.transformer.h[0].mlp.c_fc
    with decoder._standing_in():
        y = layer(torch.randn(40, layer.in_features))
    y.sum().backward()
    assert layer.weight.grad is not None


def test_server_batcher_packs_once():
    from gpt2kit.serve.batching import Batcher

    model = GPT2LMHeadModel(tiny_config()).eval()
    Batcher(model, tokenizer=None, max_batch_size=native.MAX_FP32_ROWS + 1)
    assert len(_packed(model)) > 0


@pytest.mark.skipif(native.load() is None, reason="no C compiler on this machine")
def test_small_batches_take_the_kernel_without_packing(monkeypatch):
    from gpt2kit.serve.batching import Batcher

    model = GPT2LMHeadModel(tiny_config()).eval()
    Batcher(model, tokenizer=None, max_batch_size=8)
    assert _packed(model) == [] and _held[model].kind == "arena"
    ids = torch.randint(0, 98, (native.MAX_FP32_ROWS, 5))
    generate(model, ids, max_new_tokens=2, eos_token_id=None)
    assert _packed(model) == [] and _held[model].kind == "arena"
    # packed copies made for a larger batch stay, but small batches still take the kernel
    generate(model, torch.randint(0, 98, (native.MAX_FP32_ROWS + 1, 5)), max_new_tokens=2)
    assert len(_packed(model)) > 0 and _held[model].kind == "arena"
    calls = []
    real = native.gemv
    monkeypatch.setattr(native, "gemv", lambda *a: calls.append(a[0].shape) or real(*a))
    out = generate(model, ids[:8], max_new_tokens=3, eos_token_id=None)
    assert (8, 1, model.config.n_embd) in calls  # decoding steps of 8 rows
    with decode.disabled():  # (no kernel, no packed copies: plain products)
        assert torch.equal(generate(model, ids[:8], max_new_tokens=3, eos_token_id=None), out)


# -- bf16 on CPUs without bf16 units ----------------------------------------------------------
@pytest.mark.parametrize("rows", [8, 64])
def test_bf16_products_upcast_from_32_rows_without_bf16_units(monkeypatch, rows):
    """Without AVX512-BF16/AMX a bf16 product of >= 32 rows runs in fp32 and is rounded
    back to bf16: the fp32 product's rounding, close to the native bf16 product."""
    from gpt2kit.nn import backbone

    monkeypatch.setattr(backbone, "_cpu_has_bf16_units", lambda: False)
    torch.manual_seed(0)
    layer = Linear(48, 100).to(torch.bfloat16)
    x = torch.randn(rows, 48, dtype=torch.bfloat16)
    out = layer(x)
    assert out.dtype == torch.bfloat16
    upcast = F.linear(x.float(), layer.weight.float(), layer.bias.float()).bfloat16()
    native = F.linear(x, layer.weight, layer.bias)
    assert torch.equal(out, upcast if rows >= Linear.UPCAST_ROWS else native)
    torch.testing.assert_close(out.float(), native.float(), rtol=2e-2, atol=2e-2)
    out.float().sum().backward()  # differentiable like the plain product
    assert layer.weight.grad.dtype == torch.bfloat16
