"""`cache_implementation="static"`: the fixed-shape decode step, compiled, on CPU.

The CUDA-graph capture (`mode="reduce-overhead"`) needs a GPU; everything else of that
path runs here: the static cache, the tensor write position, the capacity-wide mask, the
dynamo trace with `fullgraph=True` (`backend="eager"`: fast to build) and one real
inductor compile. The reference is the dynamic path, itself tested against
`transformers` in `test_generation.py`.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from gpt2kit import GPT2Config, GPT2LMHeadModel
from gpt2kit.generation import GenerationConfig, generate
from gpt2kit.generation.compiled import (
    CAPACITY_BUCKET,
    captures_graph,
    compile_kwargs,
    release_static_decoders,
    static_capacity,
)
from gpt2kit.nn.cache import StaticKVCache
from harness import left_padded_prompts, tiny_config

PAD = 98
# A dynamo backend that runs the traced graph as is and counts the graphs it is handed:
# `fullgraph=True` tracing without inductor's build time. Shared by every test, so each
# (rows, capacity) is traced once per module.
COUNTER = CompileCounter()
EAGER = {"backend": COUNTER}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    # A large init spread: peaked next-token distributions, so argmax never hinges on rounding.
    # One layer: a dynamo trace costs seconds per layer (several layers: see the eager test).
    return GPT2LMHeadModel(tiny_config(n_layer=1, initializer_range=0.3)).eval()


def _both(model, *args, compile_config=EAGER, **kw):
    dynamic = generate(model, *args, **kw)
    static = generate(
        model, *args, cache_implementation="static", compile_config=compile_config, **kw
    )
    return dynamic, static


def test_greedy_batch1_same_ids_and_scores(model):
    ids = torch.tensor([[5, 17, 42, 8]])
    kw = dict(max_new_tokens=20, eos_token_id=None, return_dict_in_generate=True)
    dynamic, static = _both(model, ids, output_scores=True, **kw)
    assert torch.equal(dynamic.sequences, static.sequences)
    assert len(static.scores) == 20
    for a, b in zip(dynamic.scores, static.scores):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("eos", [None, "hit"])
def test_greedy_left_padded_batch_same_ids(model, eos):
    ids, mask = left_padded_prompts(4)
    if eos == "hit":  # tokens the rows actually produce: rows finish at different steps
        free = generate(model, ids, mask, max_new_tokens=6, eos_token_id=None, pad_token_id=PAD)
        eos = [int(free[0, ids.shape[1] + 1]), int(free[1, ids.shape[1] + 3])]
    dynamic, static = _both(model, ids, mask, max_new_tokens=15, eos_token_id=eos, pad_token_id=PAD)
    assert torch.equal(dynamic, static)


def test_right_padded_prompts_same_ids(model):
    ids, mask = left_padded_prompts(4, seed=2)
    # Right-pad the same texts: generate moves them left; positions come from the mask.
    right = torch.full_like(ids, PAD)
    right_mask = torch.zeros_like(mask)
    for r in range(4):
        n = int(mask[r].sum())
        right[r, :n], right_mask[r, :n] = ids[r, -n:], 1
    dynamic, static = _both(
        model, right, right_mask, max_new_tokens=9, eos_token_id=None, pad_token_id=PAD
    )
    assert torch.equal(dynamic, static)


def test_seeded_sampling_same_ids(model):
    ids, mask = left_padded_prompts(2)
    kw = dict(
        max_new_tokens=12,
        do_sample=True,
        top_k=20,
        temperature=0.9,
        repetition_penalty=1.2,
        num_return_sequences=2,
        eos_token_id=None,
        pad_token_id=PAD,
        seed=7,
    )
    dynamic, static = _both(model, ids, mask, **kw)
    assert dynamic.shape == (4, ids.shape[1] + 12)
    assert torch.equal(dynamic, static)


def test_disable_compile_runs_the_static_step_eagerly():
    torch.manual_seed(3)
    deep = GPT2LMHeadModel(tiny_config(n_layer=3, initializer_range=0.3)).eval()
    ids, mask = left_padded_prompts(2, seed=3)
    kw = dict(max_new_tokens=7, eos_token_id=None, pad_token_id=PAD)
    dynamic = generate(deep, ids, mask, **kw)
    static = generate(deep, ids, mask, cache_implementation="static", disable_compile=True, **kw)
    assert torch.equal(dynamic, static)


def test_no_recompile_for_same_shapes_or_same_bucket(model):
    opts = dict(
        cache_implementation="static", compile_config=EAGER, eos_token_id=None, pad_token_id=PAD
    )
    ids, mask = left_padded_prompts(2)
    before = COUNTER.frame_count
    first = generate(model, ids, mask, max_new_tokens=10, **opts)
    assert COUNTER.frame_count == before + 1  # batch 2 is traced by this test only
    again = generate(model, ids, mask, max_new_tokens=10, **opts)
    assert torch.equal(first, again) and COUNTER.frame_count == before + 1
    # Another prompt and output length in the same capacity bucket: same compiled step.
    ids2, mask2 = left_padded_prompts(2, seed=5)
    generate(model, ids2[:, 1:], mask2[:, 1:], max_new_tokens=20, **opts)
    assert COUNTER.frame_count == before + 1
    assert any(key[0] == 2 for key in vars(model)["_gpt2kit_static_decoders"])


def test_beam_search_falls_back_to_the_dynamic_cache(model):
    ids, mask = left_padded_prompts(2)
    kw = dict(max_new_tokens=6, num_beams=3, eos_token_id=None, pad_token_id=PAD)
    dynamic, static = _both(model, ids, mask, **kw)
    assert torch.equal(dynamic, static)


def test_sliding_window_reencodes_into_the_static_cache(model):
    ids = torch.randint(1, PAD, (1, 40), generator=torch.Generator().manual_seed(4))
    kw = dict(max_new_tokens=50, eos_token_id=None, context_overflow="slide", slide_stride=16)
    dynamic, static = _both(model, ids, **kw)  # 90 tokens through 64 positions
    assert torch.equal(dynamic, static)


@pytest.mark.slow  # a real inductor build: C++ compile, tens of seconds on a loaded machine
def test_inductor_compile_same_ids_and_close_scores(model):
    ids, mask = left_padded_prompts(2, seed=11)
    kw = dict(
        max_new_tokens=8,
        eos_token_id=None,
        pad_token_id=PAD,
        return_dict_in_generate=True,
        output_scores=True,
    )
    dynamic, static = _both(model, ids, mask, compile_config={}, **kw)
    assert torch.equal(dynamic.sequences, static.sequences)
    for a, b in zip(dynamic.scores, static.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


# -- pieces ------------------------------------------------------------------------------------
def test_static_cache_writes_at_tensor_positions_and_refuses_to_grow():
    cache = StaticKVCache(1, batch=2, n_head=2, head_dim=4, capacity=8)
    k = torch.randn(2, 2, 3, 4)
    pre_k, _ = cache.update(0, k, k + 1)
    assert pre_k.shape == (2, 2, 3, 4) and torch.equal(pre_k, k)
    cache.advance(3)
    new = torch.randn(2, 2, 1, 4)
    full_k, full_v = cache.at(torch.tensor([3])).update(0, new, new)
    assert full_k.shape == (2, 2, 8, 4) and full_k.data_ptr() == cache.keys[0].data_ptr()
    assert torch.equal(full_k[:, :, 3:4], new) and torch.equal(full_k[:, :, :3], k)
    cache.reorder(torch.tensor([1, 1]))
    assert torch.equal(cache.keys[0][0], cache.keys[0][1])
    assert cache.keys[0].data_ptr() == full_k.data_ptr()  # reordered in place
    with pytest.raises(ValueError, match="capacity|positions"):
        cache.update(0, torch.randn(2, 2, 6, 4), torch.randn(2, 2, 6, 4))


def test_capacity_buckets():
    assert static_capacity(1, 1024) == CAPACITY_BUCKET
    assert static_capacity(CAPACITY_BUCKET + 1, 1024) == 2 * CAPACITY_BUCKET
    assert static_capacity(1000, 1024) == 1024
    assert static_capacity(40, 64) == 64


def test_compile_defaults_per_device():
    cfg = GenerationConfig(cache_implementation="static")
    cpu = compile_kwargs(cfg, torch.device("cpu"))
    assert cpu == {"backend": "inductor", "fullgraph": True, "dynamic": False}
    gpu = torch.device("cuda")
    cuda = compile_kwargs(cfg, gpu)
    assert cuda == cpu and captures_graph(cuda, gpu)  # the decoder records the graph itself
    assert not captures_graph(cpu, torch.device("cpu"))
    frozen = compile_kwargs(cfg.copy(compile_config={"options": {"freezing": True}}), gpu)
    assert frozen["options"] == {"freezing": True} and captures_graph(frozen, gpu)
    # Modes with CUDA graphs mean torch's own (graph trees); others are recorded here.
    trees = compile_kwargs(cfg.copy(compile_config={"mode": "reduce-overhead"}), gpu)
    assert trees["mode"] == "reduce-overhead" and not captures_graph(trees, gpu)
    tuned = compile_kwargs(cfg.copy(compile_config={"mode": "max-autotune-no-cudagraphs"}), gpu)
    assert captures_graph(tuned, gpu)
    assert not captures_graph(
        compile_kwargs(cfg.copy(compile_config={"mode": "max-autotune"}), gpu), gpu
    )
    none = compile_kwargs(cfg.copy(compile_config={"options": {"triton.cudagraphs": False}}), gpu)
    assert not captures_graph(none, gpu)
    assert not captures_graph(compile_kwargs(cfg.copy(disable_compile=True), gpu), gpu)
    assert compile_kwargs(cfg.copy(disable_compile=True), torch.device("cpu")) is None

    class CompileConfig:  # transformers' CompileConfig, duck-typed
        def to_dict(self):
            return {
                "fullgraph": False,
                "dynamic": None,
                "backend": "eager",
                "mode": None,
                "options": None,
            }

    assert compile_kwargs(cfg.copy(compile_config=CompileConfig()), torch.device("cpu")) == {
        "backend": "eager",
        "fullgraph": False,
        "dynamic": False,
        "mode": None,
    }


def test_options_round_trip_without_compile_config(tmp_path):
    cfg = GenerationConfig(cache_implementation="static", compile_config={"backend": "eager"})
    cfg.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "generation_config.json").read_text())
    assert data == {"cache_implementation": "static"}
    assert GenerationConfig.from_pretrained(tmp_path).cache_implementation == "static"


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(cache_implementation="paged"), "cache_implementation"),
        (dict(cache_implementation="static", compile_config={"freezing": True}), "options"),
        (dict(cache_implementation="static", compile_config="max-autotune"), "compile_config"),
    ],
)
def test_bad_options_raise(model, kw, word):
    with pytest.raises(ValueError, match=word):
        generate(model, torch.tensor([[1, 2]]), max_new_tokens=2, **kw)


def test_cross_attention_models_are_refused():
    from gpt2kit import GPT2ForConditionalGeneration

    cfg = GPT2Config(**{**tiny_config().to_dict(), "add_cross_attention": True})
    model = GPT2ForConditionalGeneration(cfg).eval()
    enc = torch.randn(1, 3, cfg.n_embd)
    with pytest.raises(ValueError, match="cross-attention"):
        generate(
            model,
            torch.tensor([[1, 2]]),
            encoder_hidden_states=enc,
            max_new_tokens=2,
            cache_implementation="static",
        )


def test_frozen_step_is_rebuilt_after_the_weights_change(model):
    graphs = []

    def backend(gm, example_inputs, **options):  # takes the options a freezing config passes
        graphs.append(options)
        return gm.forward

    kw = dict(
        max_new_tokens=4,
        eos_token_id=None,
        cache_implementation="static",
        compile_config={"backend": backend, "options": {"freezing": True}},
    )
    ids = torch.tensor([[3, 4, 5]])
    first = generate(model, ids, **kw)
    generate(model, ids, **kw)
    assert len(graphs) == 1 and graphs[0]["options"] == {"freezing": True}
    with torch.no_grad():  # an in-place update, as an optimizer step or load_state_dict does
        model.transformer.ln_f.bias.add_(0.0)
    assert torch.equal(generate(model, ids, **kw), first)
    assert len(graphs) == 2  # the weights a frozen graph baked in may be stale: recompiled


def test_kept_decoders_are_not_copied_with_the_model(model):
    generate(
        model,
        torch.tensor([[1, 2]]),
        max_new_tokens=2,
        cache_implementation="static",
        compile_config=EAGER,
    )
    assert vars(model)["_gpt2kit_static_decoders"]
    clone = copy.deepcopy(model)
    assert not vars(clone)["_gpt2kit_static_decoders"]
    out = generate(clone, torch.tensor([[1, 2]]), max_new_tokens=3, eos_token_id=None)
    assert torch.equal(
        out, generate(model, torch.tensor([[1, 2]]), max_new_tokens=3, eos_token_id=None)
    )
    release_static_decoders(model)
    assert "_gpt2kit_static_decoders" not in vars(model)


def test_stream_generate_uses_the_static_step(model, monkeypatch):
    from gpt2kit.generation import search, streaming
    from gpt2kit.generation.compiled import select_decoder

    used = []
    monkeypatch.setattr(
        search,  # `build_decoder`, which stream_generate shares with generate, calls it there
        "select_decoder",
        lambda *a, **k: used.append(select_decoder(*a, **k)) or used[-1],
    )

    class Bytes:  # one token per character
        def encode(self, text):
            return [ord(c) % 90 for c in text]

        def decode(self, ids, **kw):
            return "".join(chr(65 + int(i) % 26) for i in ids)

    kw = dict(max_new_tokens=12, eos_token_id=None)
    static = "".join(
        streaming.stream_generate(
            model, Bytes(), "abcd", cache_implementation="static", compile_config=EAGER, **kw
        )
    )
    assert getattr(used[0], "fixed_batch", False)  # the static decoder, not the model
    ids = torch.tensor([Bytes().encode("abcd")])
    dynamic = generate(model, ids, **kw)[0, 4:]
    assert static == Bytes().decode(dynamic.tolist())
