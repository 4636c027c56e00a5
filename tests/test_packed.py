"""oneDNN-packed projection weights for batched CPU decoding (`gpt2kit.models.packed`).

Batched `generate` on CPU packs every projection once (`use_decode_layout(rows > 1)`)
for batches of more than `native.MAX_FP32_ROWS` rows, or any batch without the native
kernel; smaller batches multiply through the kernel on the decode arena, packed copies or
not. The ids stay those of `transformers` (the batched parity tests in test_generation.py
run through one path or the other). Here: the packed product equals `F.linear`, the
copies never leak into checkpoints, copies of the model or training, a changed weight is
never read stale, and small batches take the kernel.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from gpt2kit import GPT2LMHeadModel, native
from gpt2kit.generation import generate
from gpt2kit.models.backbone import Linear
from gpt2kit.models.packed import PackedWeight, packing_available
from harness import tiny_config

pytestmark = pytest.mark.skipif(not packing_available(), reason="no oneDNN linear ops")


def _packed(model):
    return [m for m in model.modules() if m.__dict__.get("packed_weight") is not None]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 8, 40])
def test_packed_product_equals_linear(bias, rows):
    torch.manual_seed(0)
    layer = Linear(48, 100, bias=bias)
    layer.packed_weight = PackedWeight(layer.weight, 8)
    x = torch.randn(rows, 1, 48)
    with torch.no_grad():
        ours = layer(x)
    ref = F.linear(x, layer.weight, layer.bias)
    assert ours.shape == (rows, 1, 100)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_batched_generate_packs_and_train_drops(tmp_path):
    model = GPT2LMHeadModel(tiny_config()).eval()
    ids = torch.randint(0, 98, (native.MAX_FP32_ROWS + 1, 5))  # more rows than the kernel takes
    out = generate(model, ids, max_new_tokens=4, eos_token_id=None)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(_packed(model)) == len(linears) > 0
    assert not any("packed" in k for k in model.state_dict())
    twin = copy.deepcopy(model)  # the copy packs again on its own first batched decode
    assert _packed(twin) == [] and torch.equal(
        generate(twin, ids, max_new_tokens=4, eos_token_id=None), out
    )
    model.save_pretrained(tmp_path / "m")
    assert torch.equal(
        generate(
            GPT2LMHeadModel.from_pretrained(tmp_path / "m"),
            ids,
            max_new_tokens=4,
            eos_token_id=None,
        ),
        out,
    )
    model.train()
    assert _packed(model) == []
    model.eval()
    generate(model, ids, max_new_tokens=2, eos_token_id=None)
    generate(model, ids[:1], max_new_tokens=2, eos_token_id=None)  # batch 1: weights move
    assert _packed(model) == []  # (copies of the weights where they were would be stale)
    generate(model, ids, max_new_tokens=2, eos_token_id=None)
    packed_again = [m.packed_weight for m in _packed(model)]
    assert packed_again
    if model._weight_layout() == "arena":  # native kernels: no move back, no repacking
        generate(model, ids[:1], max_new_tokens=2, eos_token_id=None)
        generate(model, ids, max_new_tokens=2, eos_token_id=None)
        assert [m.packed_weight for m in _packed(model)] == packed_again  # the same objects
    generate(model, ids, max_new_tokens=2, eos_token_id=None)
    model.release_decode_weights()
    assert _packed(model) == []
    model.pack_decode_weights = False
    generate(model, ids, max_new_tokens=2, eos_token_id=None)
    assert _packed(model) == []


def test_changed_weight_is_never_read_stale():
    torch.manual_seed(0)
    layer = Linear(16, 32)
    layer.packed_weight = PackedWeight(layer.weight, 4)
    x = torch.randn(4, 16)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # in place: same address, new version
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.weight = torch.nn.Parameter(torch.randn(32, 16))  # replaced: new address
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))


def test_grad_mode_uses_the_ordinary_product():
    layer = Linear(16, 32)
    layer.packed_weight = PackedWeight(layer.weight, 4)
    y = layer(torch.randn(4, 16))
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
    assert _packed(model) == [] and model._weight_layout() == "arena"
    ids = torch.randint(0, 98, (native.MAX_FP32_ROWS, 5))
    generate(model, ids, max_new_tokens=2, eos_token_id=None)
    assert _packed(model) == [] and model._weight_layout() == "arena"
    # packed copies made for a larger batch stay, but small batches still take the kernel
    generate(model, torch.randint(0, 98, (native.MAX_FP32_ROWS + 1, 5)), max_new_tokens=2)
    assert len(_packed(model)) > 0
    calls = []
    real = native.gemv
    monkeypatch.setattr(native, "gemv", lambda *a: calls.append(a[0].shape) or real(*a))
    out = generate(model, ids[:8], max_new_tokens=3, eos_token_id=None)
    assert (8, 1, model.config.n_embd) in calls  # decoding steps of 8 rows
    twin = copy.deepcopy(model)  # (no kernel, no packed copies: plain products)
    twin.native_decode = twin.pack_decode_weights = False
    assert torch.equal(generate(twin, ids[:8], max_new_tokens=3, eos_token_id=None), out)


# -- bf16 on CPUs without bf16 units ----------------------------------------------------------
@pytest.mark.parametrize("rows", [8, 64])
def test_bf16_products_upcast_from_32_rows_without_bf16_units(monkeypatch, rows):
    """Without AVX512-BF16/AMX a bf16 product of >= 32 rows runs in fp32 and is rounded
    back to bf16: the fp32 product's rounding, close to the native bf16 product."""
    from gpt2kit.models import backbone

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
