"""Training's native dropout (`gpt2kit.nn.dropout`, kernels.c "Dropout") against PyTorch's.

The claim is bit-for-bit: the same mask `F.dropout` draws, the same output and gradient,
and the default generator left exactly where `F.dropout` leaves it; so a model training
with dropout matches `transformers` under the same seed, step after step.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_hf_twin
from gpt2kit import native
from gpt2kit.checkpoint import _CONV1D
from gpt2kit.models.lm import GPT2LMHeadModel
from gpt2kit.nn import dropout as D
from harness import tiny_config

pytestmark = pytest.mark.skipif(native.load() is None, reason="no C compiler on this machine")


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def run_both(fn_ours, fn_theirs, *inputs: torch.Tensor, seed: int, skip: int):
    """Each function's output and input gradients and the generator state after, from the
    same generator state (`skip` draws into the stream, so runs start mid-block)."""
    torch.manual_seed(seed)
    torch.rand(skip)
    start = torch.get_rng_state()
    results = []
    for fn in (fn_ours, fn_theirs):
        torch.set_rng_state(start)
        y = fn(*inputs)
        grads = torch.autograd.grad(y, inputs, torch.linspace(-1, 1, y.numel()).view(y.shape))
        results.append((y, grads, torch.get_rng_state()))
    return results


@pytest.mark.parametrize("p", [0.1, 0.37, 0.5, 0.9, 1e-6])
@pytest.mark.parametrize("shape", [(1,), (311,), (312,), (313,), (625,), (3, 1249), (2, 4, 96)])
def test_dropout_bit_equal_to_pytorch(p, shape):
    x = torch.randn(shape, requires_grad=True)
    for skip in (0, 1, 623):
        (y, g, st), (y0, g0, st0) = run_both(
            lambda t: D.dropout(t, p), lambda t: F.dropout(t, p, True), x, seed=3, skip=skip
        )
        assert same_bits(y, y0) and same_bits(g[0], g0[0])
        assert torch.equal(st, st0), "the generator must end where F.dropout leaves it"


def test_dropout_keeps_nan_inf_and_signs_as_pytorch():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, -1.0, 2.0] * 50)
    x.requires_grad_(True)
    (y, g, _), (y0, g0, _) = run_both(
        lambda t: D.dropout(t, 0.5), lambda t: F.dropout(t, 0.5, True), x, seed=0, skip=0
    )
    assert same_bits(y, y0) and same_bits(g[0], g0[0])


def test_native_path_is_taken_and_fallbacks_equal_pytorch(monkeypatch):
    x = torch.randn(64, 32)
    calls = []
    real = native.dropout
    monkeypatch.setattr(native, "dropout", lambda *a: calls.append(1) or real(*a))
    D.dropout(x, 0.2)
    assert calls, "fp32 contiguous CPU input must take the native kernel"
    calls.clear()
    for t in (x.t(), x.to(torch.bfloat16)):  # non-contiguous, other dtype: PyTorch's draw
        torch.manual_seed(4)
        a = D.dropout(t, 0.2)
        torch.manual_seed(4)
        assert torch.equal(a, F.dropout(t, 0.2, True))
    assert not calls
    assert torch.equal(D.dropout(x, 0.2, training=False), x)
    # a generator state the kernel refuses: PyTorch's own draw, same result
    monkeypatch.setattr(native, "dropout", lambda *a: None)
    xg = x.clone().requires_grad_(True)
    (y, g, st), (y0, g0, st0) = run_both(
        lambda t: D.dropout(t, 0.3), lambda t: F.dropout(t, 0.3, True), xg, seed=1, skip=5
    )
    assert same_bits(y, y0) and same_bits(g[0], g0[0]) and torch.equal(st, st0)


def test_dropout_module_is_an_nn_dropout():
    m = D.Dropout(0.25)
    assert isinstance(m, nn.Dropout) and m.p == 0.25 and repr(m) == repr(nn.Dropout(0.25))
    x = torch.randn(10, 10)
    torch.manual_seed(2)
    a = m(x)
    torch.manual_seed(2)
    assert torch.equal(a, F.dropout(x, 0.25, True))
    m.eval()
    assert m(x) is x or torch.equal(m(x), x)


@pytest.mark.parametrize("padded", [False, True])
def test_attention_with_dropout_bit_equal_to_sdpa(padded):
    assert D.sdpa_reproduced(), "this PyTorch's SDPA math path must be reproduced"
    q, k, v = (torch.randn(2, 4, 33, 16, requires_grad=True) for _ in range(3))
    mask = None
    if padded:
        mask = torch.ones(2, 1, 33, 33, dtype=torch.bool).tril()
        mask[0, :, :, :3] = False
        mask[0, :, :3, 0] = True  # every row keeps one position

    def ours(q, k, v):
        return D.attention_with_dropout(q, k, v, mask, 0.1, not padded, 0.25)

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=0.1, is_causal=not padded, scale=0.25
        )

    (y, g, st), (y0, g0, st0) = run_both(ours, sdpa, q, k, v, seed=7, skip=11)
    assert same_bits(y, y0) and torch.equal(st, st0)
    assert all(same_bits(a, b) for a, b in zip(g, g0))


def test_sdpa_check_leaves_the_generator_alone(monkeypatch):
    monkeypatch.setattr(D, "_REPRODUCED", None)
    torch.manual_seed(9)
    before = torch.get_rng_state()
    assert D.sdpa_reproduced()
    assert torch.equal(before, torch.get_rng_state())


def test_training_with_dropout_equals_transformers_step_by_step(tmp_path):
    """Dropout 0.1 everywhere (embeddings, attention maps, residuals), same seed: losses
    and every gradient equal `transformers`' over three steps."""
    config = tiny_config(resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    hf, folder = make_hf_twin(config, tmp_path / "twin", "GPT2LMHeadModel")
    ours = GPT2LMHeadModel.from_pretrained(folder)
    hf.train()
    ours.train()
    for step in range(3):
        ids = torch.randint(
            0, config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(step)
        )
        torch.manual_seed(100 + step)
        theirs = hf(ids, labels=ids).loss
        theirs.backward()
        torch.manual_seed(100 + step)
        mine = ours(ids, labels=ids).loss
        mine.backward()
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=1e-6)
        grads = dict(hf.named_parameters())
        for name, param in ours.named_parameters():
            ref = grads[name].grad
            ref = ref.t() if _CONV1D.search(name) else ref
            torch.testing.assert_close(param.grad, ref, atol=1e-5, rtol=1e-4, msg=name)
        hf.zero_grad()
        ours.zero_grad()


def test_gradient_checkpointing_redraws_the_same_masks(monkeypatch):
    """Under activation checkpointing the recomputed forward restores the generator and so
    draws the same masks: gradients equal the plain run's. The SDPA check runs for the
    first time inside the checkpointed forward here (its own thread: the checkpoint's
    saved-tensor hooks must not see its tensors)."""
    monkeypatch.setattr(D, "_REPRODUCED", None)
    config = tiny_config(resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    grads = []
    for checkpointed in (True, False):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config).train()
        if checkpointed:
            model.gradient_checkpointing_enable()
        ids = torch.randint(
            0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1)
        )
        torch.manual_seed(5)
        model(ids, labels=ids).loss.backward()
        grads.append([p.grad for p in model.parameters()])
    assert D._REPRODUCED is True
    for a, b in zip(*grads):
        assert torch.equal(a, b)
