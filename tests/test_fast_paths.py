"""The fast paths at the sizes they run at, against the plain paths they stand in for.

- The CPU decoder (`gpt2kit.decode`) at GPT-2 124M's shapes (width 768, MLP 3072, vocabulary
  50257, 1024 positions; two blocks, since every block has the same shapes): the fused
  batch-1 step at the last position, few-row prompts through the product kernel, batched
  steps through the one-token attention, fp32 and bf16, against the model's modules.
- The SDPA attention path (what every forward without `output_attentions` takes) against
  `transformers` for every config variant the eager-path parity tests cover.
- The chunked LM loss (`linear_cross_entropy`) at its real chunk sizes with vocabulary
  50257 against plain cross-entropy, loss and gradients.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import make_hf_twin
from gpt2kit import GPT2Config, GPT2LMHeadModel, decode, native
from gpt2kit.models import losses
from gpt2kit.nn.cache import KVCache
from harness import tiny_config
from test_backbone_parity import CONFIGS, close, random_ids

needs_kernel = pytest.mark.skipif(native.load() is None, reason="no C compiler on this machine")


# -- the CPU decoder at 124M shapes ----------------------------------------------------------
def _gpt2_small_shapes(dtype: torch.dtype) -> GPT2LMHeadModel:
    config = GPT2Config(n_layer=2, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval().to(dtype)


@pytest.fixture
def fused_calls(monkeypatch):
    calls = []
    real = native._call_blocks
    monkeypatch.setattr(
        native,
        "_call_blocks",
        lambda *a, **k: calls.append(k.get("head") is not None) or real(*a, **k),
    )
    return calls


def _steps(model, ids, rows: int):
    """Logits of the last token of `ids [B, T]` after a (plain) prefill of the rest:
    through the modules alone, and through the CPU decoder, on copies of one cache."""
    cache = KVCache(model.config.n_layer, capacity=ids.shape[1])
    with torch.no_grad():
        model(input_ids=ids[:, :-1], past_key_values=cache)
        twin = copy.deepcopy(cache)
        plain = model(input_ids=ids[:, -1:], past_key_values=cache).logits[:, -1]
        fast = decode.cpu_decoder(model, rows)(input_ids=ids[:, -1:], past_key_values=twin)
    return plain.float(), fast.logits[:, -1].float(), cache, twin


def _tolerance(dtype: torch.dtype, reference: torch.Tensor) -> float:
    # fp32: summation order only; bf16: a few roundings of values of this size
    return 1e-4 if dtype == torch.float32 else 2**-5 * float(reference.abs().max())


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_step_at_gpt2_small_shapes_and_the_last_position(dtype, fused_calls):
    model = _gpt2_small_shapes(dtype)
    ids = torch.randint(0, 50257, (1, 1024), generator=torch.Generator().manual_seed(1))
    plain, fast, cache, twin = _steps(model, ids, rows=1)
    assert fused_calls == [True]  # the whole step, position 1023, in one call
    torch.testing.assert_close(fast, plain, rtol=0, atol=_tolerance(dtype, plain))
    # the token's key and value, where SDPA put them (bf16: one rounding of the stored value
    # may land a step apart, 2^-7 relative at most; seen at 2 threads, 2.25 vs 2.2656)
    rtol = 2**-7 if dtype == torch.bfloat16 else 0.0
    for layer in range(model.config.n_layer):
        for a, b in ((twin.keys, cache.keys), (twin.values, cache.values)):
            torch.testing.assert_close(
                a[layer][:, :, 1023].float(), b[layer][:, :, 1023].float(), rtol=rtol, atol=1e-2
            )


@needs_kernel
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prompt", [16, native.MAX_FP32_ROWS])
def test_short_prompts_through_the_product_kernel_at_gpt2_small_shapes(dtype, prompt):
    model = _gpt2_small_shapes(dtype)
    ids = torch.randint(0, 50257, (1, prompt), generator=torch.Generator().manual_seed(prompt))
    calls = []
    real = native.gemv
    with torch.no_grad(), pytest.MonkeyPatch.context() as m:
        m.setattr(native, "gemv", lambda *a: calls.append(a[0].shape) or real(*a))
        fast = decode.cpu_decoder(model, 1)(input_ids=ids).logits.float()
        plain = model(input_ids=ids).logits.float()
    if dtype == torch.float32:  # (bf16 rows take it only where PyTorch has no bf16 units)
        assert (1, prompt, 768) in calls and (1, prompt, 3072) in calls
    torch.testing.assert_close(fast, plain, rtol=0, atol=_tolerance(dtype, plain))


@needs_kernel
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batched_steps_at_gpt2_small_shapes(dtype, fused_calls):
    """8 rows at one position: the whole step in one native call; with a forward hook on a
    block (the modules must run), the modules with the decoder's one-token attention
    (`attend_one`, once per layer)."""
    model = _gpt2_small_shapes(dtype)
    ids = torch.randint(0, 50257, (8, 300), generator=torch.Generator().manual_seed(2))
    plain, fast, _, _ = _steps(model, ids, rows=8)
    assert fused_calls == [True]
    torch.testing.assert_close(fast, plain, rtol=0, atol=_tolerance(dtype, plain))
    fused_calls.clear()
    calls = []
    real = native.attend_one
    hook = model.transformer.h[0].register_forward_hook(lambda *a: None)
    try:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(native, "attend_one", lambda *a: calls.append(a[0].shape) or real(*a))
            plain, fast, _, _ = _steps(model, ids, rows=8)
    finally:
        hook.remove()
    assert fused_calls == [] and calls == [(8, 1, 3 * 768)] * model.config.n_layer
    torch.testing.assert_close(fast, plain, rtol=0, atol=_tolerance(dtype, plain))


# -- the SDPA path against transformers, every config variant ---------------------------------
@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_sdpa_path_parity_configs(tmp_path, overrides):
    config = tiny_config(**overrides)
    hf, folder = make_hf_twin(config, tmp_path / "m", attn_implementation="sdpa")
    ours = GPT2LMHeadModel.from_pretrained(folder).eval()
    ids = random_ids(config)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0  # right padding in row 1 (same positions in both libraries)
    with torch.no_grad():  # (no output_attentions: the SDPA path)
        mine = ours(ids, labels=ids, output_hidden_states=True)
        theirs = hf(ids, labels=ids, output_hidden_states=True)
        close(mine.logits, theirs.logits, what="logits")
        close(mine.loss, theirs.loss, what="loss")
        for i, (a, b) in enumerate(zip(mine.hidden_states, theirs.hidden_states, strict=True)):
            close(a, b, what=f"hidden_states[{i}]")
        padded_mine = ours(ids, attention_mask=mask).logits
        padded_theirs = hf(ids, attention_mask=mask).logits
        close(padded_mine[mask.bool()], padded_theirs[mask.bool()], what="padded logits")
        # incremental decoding: a prefill, then one token at a time over the cache
        cache = KVCache(config.n_layer)
        steps = [ours(ids[:, :6], past_key_values=cache).logits]
        for t in range(6, ids.shape[1]):
            steps.append(ours(ids[:, t : t + 1], past_key_values=cache).logits)
        close(torch.cat(steps, 1), theirs.logits, what="cached decoding")


# -- the chunked LM loss at vocabulary 50257 --------------------------------------------------
def _loss_and_grads(fn, hidden, weight, labels):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(h, w, labels)
    loss.backward()
    return loss.detach(), h.grad, w.grad


def _plain_cross_entropy(h, w, labels):
    return F.cross_entropy(h @ w.T, labels, ignore_index=-100)


def _check_chunked_loss(rows: int, width: int) -> None:
    g = torch.Generator().manual_seed(rows)
    hidden = torch.randn(rows, width, generator=g)
    weight = torch.randn(50257, width, generator=g) * 0.05
    labels = torch.randint(0, 50257, (rows,), generator=g)
    labels[::7] = -100  # ignored positions, some in every chunk
    ours = _loss_and_grads(losses.linear_cross_entropy, hidden, weight, labels)
    theirs = _loss_and_grads(_plain_cross_entropy, hidden, weight, labels)
    for a, b, what in zip(ours, theirs, ("loss", "grad hidden", "grad weight"), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, w=what: f"{w}: {m}")


def test_chunked_loss_at_the_cpu_chunk_size_with_vocab_50257():
    step = losses._chunk_rows(50257, torch.device("cpu"))
    assert step == 128  # ~8 MB of fp32 logits per chunk
    _check_chunked_loss(rows=2 * step + 45, width=64)  # two full chunks and a ragged one


@pytest.mark.slow
def test_chunked_loss_at_the_accelerator_chunk_size_with_vocab_50257(monkeypatch):
    step = losses._chunk_rows(50257, torch.device("cuda"))  # (a function of the device type)
    assert step == 2670  # ~512 MB of fp32 logits per chunk
    monkeypatch.setattr(losses, "_chunk_rows", lambda vocab, device: step)
    _check_chunked_loss(rows=step + 30, width=16)  # one full chunk and a ragged one
