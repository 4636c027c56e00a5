"""The native selection over the vocabulary (kernels.c, "Selection"): generation's greedy
pick (`argmax_rows`) and top-k (`topk_rows`) against PyTorch's, values exactly, on
random, tied, masked (-inf) and non-finite rows, at GPT-2's vocabulary too."""

from __future__ import annotations

import pytest
import torch

from gpt2kit import native

needs_kernel = pytest.mark.skipif(native.load() is None, reason="no C compiler: no native kernels")
INF = float("inf")


def _rows(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    masked = torch.randn(4, n, generator=g)
    masked[masked < 0.8] = -INF  # (what a top-k warper leaves)
    return [
        torch.randn(4, n, generator=g) * 5,
        torch.randint(0, 3, (4, n), generator=g).float(),  # ties everywhere
        masked,
        torch.full((2, n), -INF),
    ]


def _assert_topk(x: torch.Tensor, k: int) -> None:
    values, index = native.topk_rows(x, k)
    assert torch.equal(values, x.topk(k).values)
    assert torch.equal(x.gather(1, index), values)
    # equal values by ascending index, and no index twice
    same = values[:, 1:] == values[:, :-1]
    assert bool((index[:, 1:] > index[:, :-1])[same].all())
    assert all(len(set(row.tolist())) == k for row in index)


@needs_kernel
@pytest.mark.parametrize("n", [1, 7, 63, 64, 65, 300, 50257])
def test_topk_equals_torch(n):
    for x in _rows(n, n):
        for k in sorted({1, min(n, 2), min(n, 50), min(n, 51), n}):
            _assert_topk(x, k)


@needs_kernel
@pytest.mark.parametrize("n", [1, 7, 64, 65, 50257])
def test_argmax_is_the_first_maximum(n):
    for x in _rows(n, n + 1):
        assert torch.equal(native.argmax_rows(x), x.argmax(-1))
    x = torch.randn(3, n)
    x[1, -1] = INF
    assert torch.equal(native.argmax_rows(x), x.argmax(-1))


@needs_kernel
def test_nan_rows_and_other_inputs_take_torch():
    x = torch.randn(3, 100)
    x[1, 7] = float("nan")  # (PyTorch sorts NaN highest)
    assert torch.equal(native.topk_rows(x, 3)[1], x.topk(3).indices)
    assert torch.equal(native.argmax_rows(x), x.argmax(-1))
    b = torch.randn(2, 100).bfloat16()
    assert torch.equal(native.topk_rows(b, 5)[0], b.topk(5).values)
    assert torch.equal(native.argmax_rows(b), b.argmax(-1))
    t = torch.randn(4, 100).t()  # (not contiguous)
    assert torch.equal(native.topk_rows(t, 4)[0], t.topk(4).values)
    with pytest.raises(RuntimeError):  # (k past the row: PyTorch's own error)
        native.topk_rows(torch.randn(2, 5), 6)


@needs_kernel
def test_mask_below_equals_masked_fill():
    x = torch.randn(5, 1000)
    x[2, 3] = float("nan")
    thr = x.topk(10).values[:, -1:]
    for fill in (-INF, -1e4):
        got, want = native.mask_below_rows(x, thr, fill), x.masked_fill(x < thr, fill)
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@needs_kernel
def test_top_k_warper_equals_its_torch_definition():
    from gpt2kit.generation.processors import TopKLogitsWarper

    for x in _rows(1000, 3):
        for k in (1, 5, 1000):
            warper = TopKLogitsWarper(k)
            out = warper(None, x)
            assert torch.equal(out, x.masked_fill(x < x.topk(k).values[..., -1:], -INF))
            kept = warper.survivors(out)
            if kept is not None:  # (only where exactly k scores survive)
                values, index = kept
                assert torch.equal(out.gather(1, index), values)
                assert bool((out > -INF).sum(-1).le(k).all())
            assert warper.survivors(out.clone()) is None  # (another tensor: select again)
    tied = torch.zeros(2, 10)
    warper = TopKLogitsWarper(3)
    assert warper.survivors(warper(None, tied)) is None  # (ten survive: the whole row)


@needs_kernel
def test_the_draw_reusing_the_warpers_selection_draws_the_same_tokens(monkeypatch):
    from gpt2kit import GPT2Config, GPT2LMHeadModel
    from gpt2kit.generation import sampling

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=500)).eval()
    prompts = torch.randint(0, 500, (4, 5))

    def run():
        torch.manual_seed(7)
        return model.generate(prompts, max_new_tokens=12, do_sample=True, top_k=20)

    reused = run()
    real = sampling.sample
    monkeypatch.setattr(sampling, "sample", lambda *a: real(*a[:5]))  # (select again)
    assert torch.equal(run(), reused)


@needs_kernel
def test_rows_shared_among_threads_equal_torch():
    """8 rows of GPT-2's vocabulary: the rows are split among the threads (SELECT_PARALLEL);
    a NaN in any row still hands the whole call to PyTorch."""
    x = torch.randn(8, 50257, generator=torch.Generator().manual_seed(3))
    x[5, :40000] = -INF  # (a row already masked: candidates past -inf)
    _assert_topk(x, 51)
    thr = x.topk(51).values[:, -1:]
    assert torch.equal(native.mask_below_rows(x, thr, -INF), x.masked_fill(x < thr, -INF))
    x[6, 123] = float("nan")
    assert torch.equal(native.topk_rows(x, 51)[1], x.topk(51).indices)
