"""The fused decoding step, batch 1 or a few rows at one position (`decode/plan.py` +
`native.run_step`), run by the `CPUDecoder`.

It must compute what the modules compute (logits to 1e-5 against `transformers` in fp32,
the same cache contents), run only where that holds (hooks, replaced modules, autograd,
training, cross-attention, an activation it lacks: the module path), and notice when the
weights it reads change (replaced parameters, in-place updates, `.to()`).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from conftest import make_hf_twin
from gpt2kit import GPT2LMHeadModel, decode, generate, native
from gpt2kit.decode import plan
from gpt2kit.decode.decoder import _held
from gpt2kit.nn.cache import KVCache
from harness import tiny_config

pytestmark = pytest.mark.skipif(native.load() is None, reason="no C compiler on this machine")


@pytest.fixture
def spy(monkeypatch):
    """Records each fused call: "step" (`native.run_step`, an LM model's whole step) or
    "blocks" (`native.run_blocks`, the backbone's blocks)."""
    calls = []
    real = native._call_blocks

    def counting(*args, **kwargs):
        calls.append("step" if kwargs.get("head") is not None else "blocks")
        return real(*args, **kwargs)

    monkeypatch.setattr(native, "_call_blocks", counting)
    return calls


def _step_logits(model, ids, fused: bool):
    """Logits of the last token of `ids [1, T]`, decoded after a prefill of the rest,
    through the decoder (`fused`) or the modules alone; and the cache."""
    step = decode.cpu_decoder(model, 1) if fused else model
    cache = KVCache(model.config.n_layer, capacity=ids.shape[1] + 3)
    with torch.no_grad():
        step(input_ids=ids[:, :-1], past_key_values=cache)
        logits = step(input_ids=ids[:, -1:], past_key_values=cache).logits[:, -1]
    return logits, cache


CONFIGS = {
    "gelu_new": dict(),
    "gelu-odd-heads": dict(n_embd=36, n_head=3, activation_function="gelu"),  # 12-wide heads
    "relu-inner": dict(activation_function="relu", n_inner=20, layer_norm_epsilon=1e-3),
    "silu-scaled": dict(activation_function="silu", scale_attn_by_inverse_layer_idx=True),
    "quick_gelu-unscaled": dict(activation_function="quick_gelu", scale_attn_weights=False),
    "linear-3layer": dict(activation_function="linear", n_layer=3),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_step_matches_transformers(name, tmp_path, spy):
    cfg = tiny_config(initializer_range=0.3, **CONFIGS[name])
    hf, folder = make_hf_twin(cfg, tmp_path / "m", seed=3)
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 9), generator=torch.Generator().manual_seed(1))
    fused, cache = _step_logits(model, ids, fused=True)
    assert spy == ["step"]
    with torch.no_grad():
        expected = hf(ids).logits[:, -1]
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    modules, module_cache = _step_logits(model, ids, fused=False)
    assert len(spy) == 1  # (the module path)
    torch.testing.assert_close(fused, modules, rtol=1e-5, atol=1e-5)
    for layer in range(cfg.n_layer):  # the token's keys and values were written
        for a, b in ((cache.keys, module_cache.keys), (cache.values, module_cache.values)):
            torch.testing.assert_close(a[layer][:, :, :9], b[layer][:, :, :9])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bf16_fused_step_is_as_close_to_fp32_as_the_modules(seed, spy):
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(tiny_config(n_layer=3, initializer_range=0.3)).eval()
    ids = torch.randint(0, 100, (1, 12))
    exact, _ = _step_logits(model, ids, fused=False)
    model.to(torch.bfloat16)
    fused, _ = _step_logits(model, ids, fused=True)
    assert spy == ["step"] and fused.dtype == torch.bfloat16
    modules, _ = _step_logits(model, ids, fused=False)
    # each op rounds to bf16 where PyTorch does; only summation order differs, so both
    # are off the fp32 logits (~5 here) by a few bf16 steps (2^-8 relative), and the
    # fused step no more than the modules
    scale = exact.abs().max()
    fused_error = (fused.float() - exact).abs().max()
    modules_error = (modules.float() - exact).abs().max()
    assert fused_error <= 2 * modules_error + 2**-8 * scale
    torch.testing.assert_close(fused.float(), modules.float(), rtol=0, atol=2**-6 * scale)


def test_greedy_generation_uses_it_and_equals_the_module_path(spy):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config(n_layer=3, initializer_range=0.3)).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    fused = generate(model, ids, max_new_tokens=12, eos_token_id=None)
    assert len(spy) == 11  # every step after the prompt
    with decode.disabled():
        assert torch.equal(generate(model, ids, max_new_tokens=12, eos_token_id=None), fused)
    assert len(spy) == 11


def test_same_result_on_any_thread_count():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config(n_embd=64, n_inner=300)).eval()
    ids = torch.randint(0, 100, (1, 7))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = _step_logits(model, ids, fused=True)
        torch.set_num_threads(max(2, threads))
        assert torch.equal(one, _step_logits(model, ids, fused=True)[0])
    finally:
        torch.set_num_threads(threads)


def test_same_result_on_another_thread_and_with_more_threads_than_cpus():
    """The step's own barriers (kernels.c `step_wait`): a team started from a second thread
    (where libgomp stops spinning) and a team larger than the machine (threads yield while
    they wait) compute exactly the main thread's values."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config(n_embd=64, n_inner=300)).eval()
    ids = torch.randint(0, 100, (3, 7))
    threads = torch.get_num_threads()
    main, _ = _step_logits(model, ids, fused=True)
    with ThreadPoolExecutor(1) as pool:
        assert torch.equal(pool.submit(_step_logits, model, ids, True).result()[0], main)
    try:
        torch.set_num_threads(2 * (os.cpu_count() or 1) + 1)
        assert torch.equal(_step_logits(model, ids, fused=True)[0], main)
    finally:
        torch.set_num_threads(threads)


def _ready_model():
    torch.manual_seed(0)
    return GPT2LMHeadModel(tiny_config(initializer_range=0.3)).eval()


def _decode_one(model, **kwargs):
    step = decode.cpu_decoder(model, 1)
    cache = KVCache(model.config.n_layer, capacity=8)
    with torch.no_grad():
        step(input_ids=torch.tensor([[1, 2, 3]]), past_key_values=cache)
        return step(input_ids=torch.tensor([[4]]), past_key_values=cache, **kwargs)


def test_hooks_run_and_the_modules_compute_the_step(spy):
    model = _ready_model()
    seen = []
    handle = model.transformer.h[1].mlp.register_forward_hook(lambda m, i, o: seen.append(o))
    _decode_one(model)
    assert not spy and len(seen) == 2  # prefill and step, both through the module
    handle.remove()
    _decode_one(model)
    assert len(spy) == 1


def test_a_global_hook_takes_the_module_path(spy):
    model = _ready_model()
    seen = []
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append(m))
    try:
        _decode_one(model)
    finally:
        handle.remove()
    assert not spy and seen


def test_replaced_modules_and_parameters_are_noticed(spy):
    model = _ready_model()
    ids = torch.tensor([[1, 2, 3, 4]])
    _step_logits(model, ids, fused=True)
    assert len(spy) == 1

    class Scaled(nn.Linear):  # a wrapper that changes the math: the kernel must not run it
        def forward(self, x):
            return 2 * super().forward(x)

    mlp = model.transformer.h[0].mlp
    old = mlp.c_fc
    mlp.c_fc = Scaled(old.in_features, old.out_features)
    mlp.c_fc.load_state_dict(old.state_dict())
    _step_logits(model, ids, fused=True)
    assert len(spy) == 1
    mlp.c_fc = old
    _step_logits(model, ids, fused=True)
    assert len(spy) == 2

    # a block more (its edges are new; the others' are unchanged)
    extra = copy.deepcopy(model.transformer.h[0])
    extra.attn.layer_idx = model.config.n_layer  # (its own cache slot)
    model.transformer.h.append(extra)
    model.config.n_layer += 1
    fused, _ = _step_logits(model, ids, fused=True)
    modules, _ = _step_logits(model, ids, fused=False)
    torch.testing.assert_close(fused, modules, rtol=1e-5, atol=1e-5)
    assert len(spy) == 3

    # a new Parameter object, and new storage under the same one (`.data =`)
    fused_before, _ = _step_logits(model, ids, fused=True)
    assert len(spy) == 4
    attn = model.transformer.h[1].attn
    attn.c_proj.weight = nn.Parameter(torch.randn_like(attn.c_proj.weight))
    model.transformer.h[0].ln_2.bias.data = torch.randn_like(model.transformer.h[0].ln_2.bias)
    fused, _ = _step_logits(model, ids, fused=True)
    assert len(spy) == 5
    modules, _ = _step_logits(model, ids, fused=False)
    assert not torch.allclose(fused, fused_before)
    torch.testing.assert_close(fused, modules, rtol=1e-5, atol=1e-5)


def test_changed_scale_eps_and_activation_are_read(spy, monkeypatch):
    model = _ready_model()
    ids = torch.tensor([[1, 2, 3, 4]])
    _step_logits(model, ids, fused=True)
    block = model.transformer.h[1]

    def scale():
        block.attn.scale *= 0.5

    def eps():  # (one eps for all norms: the kernel takes one)
        for b in model.transformer.h:
            b.ln_1.eps = b.ln_2.eps = 0.5

    def act():  # not the config's activation: the module path runs it
        block.mlp.act = torch.relu

    for change, fused_runs in ((scale, True), (eps, True), (act, False)):
        before = len(spy)
        change()  # (no relayout in between: the same weights, the same plan unless noticed)
        fused, _ = _step_logits(model, ids, fused=True)
        assert len(spy) == before + fused_runs
        modules, _ = _step_logits(model, ids, fused=False)
        torch.testing.assert_close(fused, modules, rtol=1e-5, atol=1e-5)


def test_in_place_weight_updates_are_read(spy):
    model = _ready_model()
    ids = torch.tensor([[1, 2, 3, 4]])
    before, _ = _step_logits(model, ids, fused=True)
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight.mul_(1.5)  # same storage, new values
    after, _ = _step_logits(model, ids, fused=True)
    modules, _ = _step_logits(model, ids, fused=False)
    assert len(spy) == 2 and not torch.allclose(before, after)
    torch.testing.assert_close(after, modules, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "case", ["grad", "train", "hidden_states", "attentions", "tanh", "cross", "rows", "mask"]
)
def test_where_it_does_not_apply_the_modules_run(case, spy):
    torch.manual_seed(0)
    overrides = {"tanh": dict(activation_function="tanh"), "cross": dict(add_cross_attention=True)}
    model = GPT2LMHeadModel(tiny_config(**overrides.get(case, {}))).eval()
    step = decode.cpu_decoder(model, 1)
    B = plan.MAX_STEP_ROWS + 1 if case == "rows" else 2 if case == "mask" else 1
    cache = KVCache(model.config.n_layer, capacity=8)
    kwargs = {"output_hidden_states": case == "hidden_states"}
    kwargs["output_attentions"] = case == "attentions"
    if case == "mask":  # (a padded row: positions and attention differ per row)
        kwargs["attention_mask"] = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    with torch.no_grad():
        prefill = {k: v[:, :3] for k, v in kwargs.items() if k == "attention_mask"}
        step(input_ids=torch.ones(B, 3, dtype=torch.long), past_key_values=cache, **prefill)
    if case == "train":
        model.train()  # (a decoder built before: it must notice)
        model.transformer.drop.p = 0.0
    with torch.set_grad_enabled(case == "grad"):
        out = step(input_ids=torch.ones(B, 1, dtype=torch.long), past_key_values=cache, **kwargs)
    assert not spy and out.logits.shape == (B, 1, 100)


@pytest.mark.parametrize("name", ["gelu_new", "gelu-odd-heads", "relu-inner"])
@pytest.mark.parametrize("rows", [2, 5])
def test_a_few_rows_step_matches_transformers(name, rows, tmp_path, spy):
    """B rows at one position (a batch's step without padding): one native call whose
    logits and cache rows equal transformers' and the module path's, row by row."""
    cfg = tiny_config(initializer_range=0.3, **CONFIGS[name])
    hf, folder = make_hf_twin(cfg, tmp_path / "m", seed=3)
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    ids = torch.randint(0, cfg.vocab_size, (rows, 9), generator=torch.Generator().manual_seed(2))
    fused, cache = _step_logits(model, ids, fused=True)
    assert spy == ["step"]
    with torch.no_grad():
        expected = hf(ids).logits[:, -1]
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    modules, module_cache = _step_logits(model, ids, fused=False)
    torch.testing.assert_close(fused, modules, rtol=1e-5, atol=1e-5)
    for layer in range(cfg.n_layer):
        for a, b in ((cache.keys, module_cache.keys), (cache.values, module_cache.values)):
            torch.testing.assert_close(a[layer][:, :, :9], b[layer][:, :, :9])
    for r in range(rows):  # (each row as if alone; the prefill's BLAS sums may differ)
        alone, _ = _step_logits(model, ids[r : r + 1], fused=True)
        torch.testing.assert_close(fused[r : r + 1], alone, rtol=1e-5, atol=1e-5)


def test_a_cache_of_another_batch_takes_the_module_path(spy):
    model = _ready_model()
    step = decode.cpu_decoder(model, 1)
    cache = KVCache(model.config.n_layer, capacity=8)
    with torch.no_grad():
        step(input_ids=torch.ones(2, 3, dtype=torch.long), past_key_values=cache)
        with pytest.raises(ValueError, match="the cache holds 2 rows but the input has 3"):
            step(input_ids=torch.ones(3, 1, dtype=torch.long), past_key_values=cache)
    assert not spy


def test_plan_is_reused_between_steps():
    model = _ready_model()
    _decode_one(model)
    kept = _held[model].home["plan"]
    _decode_one(model)
    assert _held[model].home["plan"] is kept and kept.current()
    model.to(torch.float64)  # new storage for every weight
    assert not kept.current()
    assert plan._Plan(model.transformer, model, {}).ok is False  # (fp64: the modules run)


def test_copies_and_pickles_build_their_own_plan(tmp_path, spy):
    import pickle

    model = _ready_model()
    ids = torch.tensor([[1, 2, 3, 4]])
    expected, _ = _step_logits(model, ids, fused=True)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert _held.get(twin) is None  # (the decoder's copies stay with the model they copy)
        torch.testing.assert_close(_step_logits(twin, ids, fused=True)[0], expected)
    assert len(spy) == 3


def test_threads_decoding_with_one_model_do_not_mix_their_caches(spy):
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config(n_layer=3, n_embd=64, initializer_range=0.3)).eval()
    prompts = [torch.randint(0, 100, (1, 3 + i)) for i in range(4)]
    alone = [generate(model, p, max_new_tokens=24, eos_token_id=None) for p in prompts]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            together = list(
                pool.map(
                    lambda p: generate(model, p, max_new_tokens=24, eos_token_id=None), prompts
                )
            )
            for a, b in zip(alone, together, strict=True):
                assert torch.equal(a, b)
    assert len(spy) == 4 * 4 * 23


# -- the whole step of an LM model (`plan.lm_step`, `native.run_step`) --------------------------
def test_the_backbone_alone_runs_its_modules_with_the_decoders_products(spy):
    model = _ready_model()
    backbone = model.transformer
    ids = torch.tensor([[1, 2, 3, 4]])

    def last_hidden(step):
        cache = KVCache(model.config.n_layer, capacity=8)
        with torch.no_grad():
            step(input_ids=ids[:, :-1], past_key_values=cache)
            return step(input_ids=ids[:, -1:], past_key_values=cache).last_hidden_state

    fused = last_hidden(decode.cpu_decoder(backbone, 1))
    assert spy == []  # (no LM head: no whole step)
    torch.testing.assert_close(fused, last_hidden(backbone), rtol=1e-5, atol=1e-5)


def _untied_head_with_bias(model):
    """A new LM head (its own weight and a bias): the plan must point at it."""
    from gpt2kit.nn.backbone import Linear

    old = model.lm_head
    head = Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight * 0.5)
        head.bias.normal_()
    model.lm_head = head


def _final_norm_eps(model):
    model.transformer.ln_f.eps = 0.25


@pytest.mark.parametrize("change", [_untied_head_with_bias, _final_norm_eps])
def test_a_changed_head_is_read(change, spy, monkeypatch):
    model = _ready_model()
    ids = torch.tensor([[1, 2, 3, 4]])
    before, _ = _step_logits(model, ids, fused=True)
    change(model)
    fused, _ = _step_logits(model, ids, fused=True)
    assert spy == ["step", "step"] and not torch.allclose(fused, before)
    modules, _ = _step_logits(model, ids, fused=False)
    torch.testing.assert_close(fused, modules, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("where", ["transformer", "wte", "ln_f", "lm_head"])
def test_hooks_around_the_blocks_run(where, spy):
    model = _ready_model()
    module = model.lm_head if where == "lm_head" else getattr(model.transformer, where, None)
    module = module if module is not None else model.transformer
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(m))
    try:
        _decode_one(model)
    finally:
        handle.remove()
    # the step took the modules (with the decoder's products)
    assert "step" not in spy and len(seen) == 2


def test_dropout_switched_on_takes_the_module_path(spy):
    model = _ready_model()
    model.transformer.h[0].attn.resid_dropout.train()  # e.g. Monte Carlo dropout
    _decode_one(model)
    assert not spy
    model.transformer.h[0].attn.resid_dropout.eval()
    model.transformer.drop.train()  # (applied by the backbone before the blocks)
    _decode_one(model)
    assert not spy
    model.transformer.drop.eval()
    _decode_one(model)
    assert spy == ["step"]


def test_a_torch_linear_head_takes_the_whole_step(spy):
    model = _ready_model()
    ids = torch.tensor([[1, 2, 3, 4]])
    expected, _ = _step_logits(model, ids, fused=False)
    plain = nn.Linear(model.config.n_embd, model.config.vocab_size, bias=False)
    plain.weight = model.lm_head.weight  # (still tied)
    model.lm_head = plain  # torch's own Linear: the same product
    fused, _ = _step_logits(model, ids, fused=True)
    assert spy == ["step"]
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_an_embedding_with_max_norm_takes_the_module_path(spy):
    model = _ready_model()
    model.transformer.wte.max_norm = 1.0  # renormalizes the rows it reads
    _decode_one(model)
    assert "step" not in spy


def test_bad_token_and_full_context_raise_the_module_paths_errors(spy):
    model = _ready_model()
    step = decode.cpu_decoder(model, 1)
    cache = KVCache(model.config.n_layer, capacity=8)
    with torch.no_grad():
        step(input_ids=torch.tensor([[1, 2, 3]]), past_key_values=cache)
        with pytest.raises(ValueError, match="input_ids must be in"):
            step(input_ids=torch.tensor([[model.config.vocab_size]]), past_key_values=cache)
        full = KVCache(model.config.n_layer)
        n = model.config.n_positions
        step(input_ids=torch.randint(0, 100, (1, n)), past_key_values=full)
        with pytest.raises(ValueError, match="exceeds the model's"):
            step(input_ids=torch.tensor([[5]]), past_key_values=full)
    assert not spy
    with torch.no_grad(), pytest.raises(ValueError, match="integer token ids"):
        step(input_ids=torch.tensor([[5.0]]), past_key_values=cache)  # float ids: no token
    assert not spy
