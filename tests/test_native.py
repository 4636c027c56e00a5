"""The native decoding kernels (`gpt2kit/native`) and the decoder's weight arena.

The product must equal `F.linear` (fp32: to summation order; bf16: one rounding of the
fp32 sum), for any shape (each thread's rows read as 4 segments plus the rows left over,
x rows in pairs, vectors of 8, with tails),
with and without bias, on any thread count; the one-token attention must equal a cache
update + SDPA; and where the kernels cannot be built, decoding must still work.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from gpt2kit import GPT2LMHeadModel, decode, generate, native
from gpt2kit.decode.decoder import _held
from harness import tiny_config

pytestmark = pytest.mark.skipif(native.load() is None, reason="no C compiler on this machine")

SHAPES = [
    (1, 1), (3, 7), (4, 8), (5, 17), (8, 16), (9, 24), (37, 64), (2304, 768), (768, 3072),
    (50, 3077),
]  # fmt: skip


@pytest.mark.parametrize("out_features,in_features", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("rows", [1, 3])
def test_gemv_fp32_equals_linear(out_features, in_features, with_bias, rows):
    g = torch.Generator().manual_seed(out_features * 31 + in_features)
    w = torch.randn(out_features, in_features, generator=g)
    x = torch.randn(rows, 1, in_features, generator=g)
    b = torch.randn(out_features, generator=g) if with_bias else None
    y = native.gemv(x, w, b)
    assert y.shape == (rows, 1, out_features) and y.dtype == torch.float32
    ref = F.linear(x.double(), w.double(), None if b is None else b.double())
    # fp32 sums of `in_features` products: error grows like sqrt(n) * eps * |terms|
    tol = 1e-6 * in_features**0.5 * (x.abs().max() * w.abs().max()).item()
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=max(tol, 1e-6))


@pytest.mark.parametrize("out_features,in_features", SHAPES)
@pytest.mark.parametrize("rows", [1, 16])
def test_gemv_bf16_is_the_rounded_fp32_sum(out_features, in_features, rows):
    g = torch.Generator().manual_seed(in_features)
    w = torch.randn(out_features, in_features, generator=g).bfloat16()
    x = torch.randn(rows, in_features, generator=g).bfloat16()
    b = torch.randn(out_features, generator=g).bfloat16()
    y = native.gemv(x, w, b)
    assert y.dtype == torch.bfloat16
    exact = F.linear(x.double(), w.double(), b.double())
    # one bf16 rounding (relative 2^-8) of a sum that is exact to fp32 accuracy
    torch.testing.assert_close(y.double(), exact, rtol=2**-8, atol=1e-4 * in_features**0.5)
    torch.testing.assert_close(y, F.linear(x, w, b), rtol=2**-7, atol=1e-3 * in_features**0.5)


def test_gemv_same_result_on_any_thread_count():
    w, x = torch.randn(1001, 300), torch.randn(2, 300)  # each output is one thread's sum
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native.gemv(x, w, None)
        torch.set_num_threads(max(2, threads))
        assert torch.equal(one, native.gemv(x, w, None))
    finally:
        torch.set_num_threads(threads)


def test_gemv_propagates_non_finite_values():
    w = torch.ones(4, 8)
    x = torch.ones(1, 8)
    x[0, 3] = float("nan")
    assert native.gemv(x, w, None).isnan().all()
    x[0, 3] = float("inf")
    assert native.gemv(x.bfloat16(), w.bfloat16(), None).isinf().all()


def test_decoder_products_use_the_kernel_only_without_autograd(monkeypatch):
    from gpt2kit.nn import backbone

    calls = []
    monkeypatch.setattr(native, "gemv", lambda *a: calls.append(a) or F.linear(*a))
    model = GPT2LMHeadModel(tiny_config()).eval()
    layer = model.transformer.h[0].mlp.c_fc
    x = torch.randn(1, 1, layer.in_features)
    with torch.no_grad():
        layer(x)  # the model alone: PyTorch's product
        assert calls == []
        decoder = decode.cpu_decoder(model, 1)
        with decoder._standing_in():
            layer(x)
            layer(x.repeat(4, 1, 1))  # fp32, a few rows (a short prompt): the kernel too
            torch.testing.assert_close(
                layer(x.repeat(4, 1, 1)), F.linear(x.repeat(4, 1, 1), layer.weight, layer.bias)
            )
            layer(x.repeat(native.MAX_FP32_ROWS + 1, 1, 1))  # more rows: BLAS
            assert len(calls) == 3
        layer(x)  # the decoder's call is over: the module's own product again
        assert len(calls) == 3 and "forward" not in layer.__dict__
        model.bfloat16()
        decoder = decode.cpu_decoder(model, 1)
        with decoder._standing_in():
            layer(x.bfloat16().repeat(4, 1, 1))  # bf16 rows: the kernel unless bf16 units
            expected = 3 + (not backbone._cpu_has_bf16_units())
            assert len(calls) == expected
            layer(x.bfloat16().repeat(40, 1, 1))  # 32+ rows without bf16 units: fp32 upcast
            assert len(calls) == expected
    model.float()
    decoder = decode.cpu_decoder(model, 1)
    with decoder._standing_in():
        y = layer(x)  # grad enabled: the autograd path, gradients flow
    y.sum().backward()
    assert layer.weight.grad is not None and len(calls) == expected


@pytest.mark.skipif(native.gemv_op is None, reason="torch.library.custom_op needs torch >= 2.4")
def test_compiled_one_row_product_calls_the_kernel_op():
    model = GPT2LMHeadModel(tiny_config()).eval()
    layer = model.transformer.h[0].mlp.c_fc
    x = torch.randn(1, 1, layer.in_features)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm

    with torch.no_grad(), decode.cpu_decoder(model, 1)._standing_in():
        y = torch.compile(layer, backend=backend, fullgraph=True, dynamic=False)(x)
    assert "gpt2kit.gemv" in graphs[0].code  # opaque to the compiler, not a BLAS call
    torch.testing.assert_close(y, F.linear(x, layer.weight, layer.bias))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch,pos,hs", [(1, 0, 16), (1, 37, 16), (3, 5, 16), (2, 9, 12)])
def test_attend_one_equals_cache_update_and_sdpa(dtype, batch, pos, hs):
    from gpt2kit.nn.cache import KVCache

    g = torch.Generator().manual_seed(pos)
    H = 4
    d = H * hs
    history = torch.randn(2, batch, H, pos, hs, generator=g).to(dtype)
    qkv = torch.randn(batch, 1, 3 * d, generator=g).to(dtype)
    caches = []
    for _ in range(2):
        cache = KVCache(1, capacity=pos + 8)
        if pos:
            cache.update(0, history[0], history[1])
            cache.advance(pos)
        caches.append(cache)
    ref_cache, cache = caches
    q, k, v = (t.view(batch, 1, H, hs).transpose(1, 2) for t in qkv.split(d, dim=2))
    keys, values = ref_cache.update(0, k, v)
    ref = F.scaled_dot_product_attention(q.float(), keys.float(), values.float(), scale=0.3)
    ref = ref.transpose(1, 2).reshape(batch, 1, d)
    buf_k, buf_v = cache.reserve(0, pos + 1, batch, H, hs, qkv)
    out = native.attend_one(qkv, buf_k, buf_v, pos, H, 0.3)
    assert out.shape == (batch, 1, d) and out.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 2**-8
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
    # the token's key and value were written where `update` writes them
    assert torch.equal(buf_k[:, :, : pos + 1], ref_cache.keys[0][:, :, : pos + 1])
    assert torch.equal(buf_v[:, :, : pos + 1], ref_cache.values[0][:, :, : pos + 1])


def test_attend_one_uses_threads_on_long_contexts_with_the_same_result():
    g = torch.Generator().manual_seed(0)
    H, hs, pos = 12, 64, 700  # over the threading threshold
    qkv = torch.randn(1, 1, 3 * H * hs, generator=g)
    k, v = torch.randn(2, 1, H, pos + 1, hs, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native.attend_one(qkv, k.clone(), v.clone(), pos, H, 0.125)
        torch.set_num_threads(max(2, threads))
        assert torch.equal(one, native.attend_one(qkv, k.clone(), v.clone(), pos, H, 0.125))
    finally:
        torch.set_num_threads(threads)


def test_a_cache_of_another_dtype_is_never_written_by_the_kernel():
    from gpt2kit.nn.cache import KVCache

    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).eval()
    cfg = model.config
    hs = cfg.n_embd // cfg.n_head
    past = tuple(
        (torch.randn(1, cfg.n_head, 3, hs).double(), torch.randn(1, cfg.n_head, 3, hs).double())
        for _ in range(cfg.n_layer)
    )  # fp64 buffers with room to spare: the kernel must not write fp32 into them
    for step in (decode.cpu_decoder(model, 1), model):  # both: PyTorch's dtype error
        cache = KVCache.from_legacy(past, capacity=8)
        with torch.no_grad(), pytest.raises(RuntimeError, match="same dtype"):
            step(input_ids=torch.tensor([[7]]), past_key_values=cache)


# -- the decoder's weight arena ------------------------------------------------------------
def _own_storage(param):
    return param.untyped_storage().nbytes() == param.numel() * param.element_size()


def test_batch1_decoding_reads_one_arena_and_the_parameters_stay_their_own(tmp_path):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with decode.disabled():
        plain = generate(model, ids, max_new_tokens=8, eos_token_id=None)
    assert _held.get(model) is None
    out = generate(model, ids, max_new_tokens=8, eos_token_id=None)
    assert torch.equal(out, plain)
    held = _held[model]
    assert held.kind == "arena" and held.arena is not None
    # every projection and the tied LM head copied into one buffer ...
    views = [held.copy_of(w) for w in held.sources]
    assert all(v.untyped_storage().data_ptr() == held.arena.data_ptr() for v in views)
    assert held.copy_of(model.lm_head.weight) is not None
    assert model.transformer.wte.weight is model.lm_head.weight
    # ... while every parameter keeps storage of its own
    assert all(_own_storage(p) for p in model.parameters())
    assert decode.held_bytes(model) == held.arena.numel() * held.arena.element_size()
    # a batched call reads the same arena
    generate(model, ids.repeat(2, 1), max_new_tokens=2, eos_token_id=None)
    assert _held[model].arena is held.arena
    model.save_pretrained(tmp_path / "m")
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "m")
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # training between calls: the optimizer steps the parameters, the next call reads them
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    model(ids, labels=ids).loss.backward()
    opt.step()
    model.eval()
    trained = generate(model, ids, max_new_tokens=8, eos_token_id=None)
    with decode.disabled():
        assert torch.equal(trained, generate(model, ids, max_new_tokens=8, eos_token_id=None))
    decode.release(model)
    assert _held.get(model) is None and decode.held_bytes(model) == 0


def test_dtype_change_rebuilds_the_arena_in_bf16():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    generate(model, ids, max_new_tokens=2, eos_token_id=None)
    model.to(torch.bfloat16)  # new parameters' storage: the fp32 copies are not read
    out = generate(model, ids, max_new_tokens=6, eos_token_id=None)
    assert _held[model].kind == "arena" and _held[model].arena.dtype == torch.bfloat16
    with decode.disabled():
        assert torch.equal(generate(model, ids, max_new_tokens=6, eos_token_id=None), out)


def _vm_flags(address: int) -> list[str]:
    """The `VmFlags` of the mapping holding `address` (Linux `/proc/self/smaps`)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside and line.startswith("VmFlags:"):
                return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_huge_page_empty_is_aligned_advised_and_outlives_its_mapping(dtype):
    numel = (3 << 20) // torch.empty((), dtype=dtype).element_size() + 5  # 3 MiB + a tail
    t = native.huge_page_empty(numel, dtype)
    assert t.shape == (numel,) and t.dtype == dtype and t.is_contiguous()
    assert t.data_ptr() % native.HUGE_PAGE == 0
    flags = _vm_flags(t.data_ptr())
    assert "hg" in flags and "sh" not in flags  # MADV_HUGEPAGE on private memory
    t.fill_(3)  # writable, and the mapping lives as long as the tensor
    assert t.view(-1)[-1].item() == 3
    small = native.huge_page_empty(1000, dtype)  # under one huge page: an ordinary tensor
    assert small.shape == (1000,) and small.dtype == dtype


def test_a_large_arena_is_advised_huge_pages():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config(n_embd=128, vocab_size=4000)).eval()  # ~3 MiB
    ids = torch.tensor([[5, 6, 7, 8]])
    with decode.disabled():
        plain = generate(model, ids, max_new_tokens=5, eos_token_id=None)
    assert torch.equal(generate(model, ids, max_new_tokens=5, eos_token_id=None), plain)
    arena = _held[model].arena
    assert arena is not None and arena.data_ptr() % native.HUGE_PAGE == 0
    assert "hg" in _vm_flags(arena.data_ptr())


# -- building ----------------------------------------------------------------------------------
@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """`native` as if not yet loaded, with its cache in tmp_path."""
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setenv("GPT2KIT_CACHE", str(tmp_path))
    return tmp_path


def test_build_is_cached_per_source_and_cpu(fresh_native):
    assert native.load() is not None
    (built,) = (fresh_native / "native").glob("kernels-*.so")
    stamp = built.stat().st_mtime_ns
    native._tried, native._lib = False, None
    assert native.load() is not None
    assert built.stat().st_mtime_ns == stamp  # loaded from the cache, not rebuilt
    assert list((fresh_native / "native").glob("*.so")) == [built]  # no temp files left


def test_unwritable_cache_falls_back_to_the_temp_dir(fresh_native, monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the cache folder should go: mkdir fails
    monkeypatch.setenv("GPT2KIT_CACHE", str(blocked))
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert native.cache_dir().parent == tmp_path / "tmp"
    assert native.load() is not None
    assert list((tmp_path / "tmp").glob("gpt2kit-native-*/kernels-*.so"))


def test_no_compiler_or_failed_build_falls_back(fresh_native, monkeypatch, caplog):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setattr(native.shutil, "which", lambda name: name if name == "false" else None)
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        assert native.load() is None
    assert "could not build gpt2kit's native decode kernel" in caplog.text
    assert "GPT2KIT_NATIVE=0" in caplog.text
    assert not list((fresh_native / "native").glob("*.so"))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).eval()
    out = generate(model, torch.tensor([[5, 6, 7]]), max_new_tokens=4, eos_token_id=None)
    assert out.shape == (1, 7) and _held[model].kind == "column"  # BLAS' fastest layout
    assert all(p.is_contiguous() for p in model.parameters())  # (a copy: not the model's)


def test_disabled_by_environment(fresh_native, monkeypatch):
    monkeypatch.setenv("GPT2KIT_NATIVE", "0")
    assert native.load() is None and not native.loaded()
