"""`generate`: exactness against `transformers.generate`, batching, options, errors.

Twins are random-init tiny models with a large `initializer_range` so next-token
distributions are peaked (argmax never hinges on float rounding). EOS ids are tokens
these models actually produce, so the EOS paths run.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_hf_twin
from gpt2kit import GPT2LMHeadModel
from gpt2kit.generation import GenerationConfig, generate
from harness import left_padded_prompts, tiny_config


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny matmuls on a shared, loaded machine: OpenMP threads spinning against other
    # processes make each op ~50x slower than running on one thread.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


CONFIGS = {
    "tiny": dict(initializer_range=0.3),
    "gelu-3layer": dict(
        n_layer=3, n_embd=48, n_head=3, activation_function="gelu", initializer_range=0.3
    ),
}


def _make_pair(name, tmp_path_factory):
    cfg = tiny_config(**CONFIGS[name])
    hf, folder = make_hf_twin(cfg, tmp_path_factory.mktemp(name) / "m", seed=1)
    return GPT2LMHeadModel.from_pretrained(folder), hf


@pytest.fixture(scope="module", params=list(CONFIGS))
def pairs(request, tmp_path_factory):
    """(gpt2kit model, transformers model) with the same weights, for every config."""
    return _make_pair(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The "tiny" (gpt2kit, transformers) pair: the option-by-option tests use one config."""
    return _make_pair("tiny", tmp_path_factory)


# Not 0: `transformers`' beam search fills finished hypotheses with `pad or eos[0]`, which
# takes EOS for a pad id of 0; gpt2kit always fills with the pad id.
PAD = 98


def _hf(hf, ids, mask=None, **kw):
    with torch.no_grad():
        return hf.generate(ids, attention_mask=mask, do_sample=kw.pop("do_sample", False), **kw)


def _eos_hit(model) -> list[int]:
    """Two tokens greedy decoding produces early for these prompts: EOS ids that get hit."""
    ids, mask = left_padded_prompts(3)
    out = generate(model, ids, mask, max_new_tokens=6, eos_token_id=None, pad_token_id=PAD)
    return [int(out[0, ids.shape[1] + 1]), int(out[1, ids.shape[1] + 2])]


# -- greedy ----------------------------------------------------------------------------------
@pytest.mark.parametrize("eos", ["none", "one", "two"])
def test_greedy_batch1_matches_transformers(pairs, eos):
    model, hf = pairs
    eos_ids = {"none": None, "one": _eos_hit(model)[0], "two": _eos_hit(model)}[eos]
    ids = torch.tensor([[5, 17, 42, 8]])
    ours = generate(model, ids, max_new_tokens=15, eos_token_id=eos_ids, pad_token_id=PAD)
    ref = _hf(hf, ids, max_new_tokens=15, eos_token_id=eos_ids, pad_token_id=PAD)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("eos", ["none", "two"])
def test_greedy_left_padded_batch_matches_transformers(pairs, eos):
    model, hf = pairs
    eos_ids = None if eos == "none" else _eos_hit(model)
    ids, mask = left_padded_prompts(4)
    ours = generate(model, ids, mask, max_new_tokens=12, eos_token_id=eos_ids, pad_token_id=PAD)
    ref = _hf(hf, ids, mask, max_new_tokens=12, eos_token_id=eos_ids, pad_token_id=PAD)
    assert torch.equal(ours, ref)
    if eos_ids is not None:  # the EOS path ran: some row finished early and was padded
        assert (ours[:, ids.shape[1] :] == PAD).any()


def test_batched_equals_each_prompt_alone(pair):
    model, _ = pair
    eos = _eos_hit(model)[:1]
    ids, mask = left_padded_prompts(4)
    batched = generate(model, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=PAD)
    T = ids.shape[1]
    for r in range(4):
        alone = generate(
            model,
            ids[r : r + 1, mask[r].bool()],
            max_new_tokens=10,
            eos_token_id=eos,
            pad_token_id=PAD,
        )
        n = alone.shape[1] - int(mask[r].sum())
        assert torch.equal(batched[r, T : T + n], alone[0, -n:])


def test_right_padding_is_moved_left(pair):
    model, _ = pair
    ids, mask = left_padded_prompts(3)
    right_ids = torch.zeros_like(ids)
    right_mask = torch.zeros_like(mask)
    for r in range(3):
        n = int(mask[r].sum())
        right_ids[r, :n] = ids[r, -n:]
        right_mask[r, :n] = 1
    a = generate(model, ids, mask, max_new_tokens=8, eos_token_id=None, pad_token_id=PAD)
    b = generate(
        model, right_ids, right_mask, max_new_tokens=8, eos_token_id=None, pad_token_id=PAD
    )
    assert torch.equal(a, b)


def test_penalties_and_constraints_match_transformers(pair):
    model, hf = pair
    ids, mask = left_padded_prompts(3)
    kw = dict(
        max_new_tokens=14,
        eos_token_id=_eos_hit(model)[0],
        pad_token_id=PAD,
        repetition_penalty=1.3,
        no_repeat_ngram_size=2,
        bad_words_ids=[[32], [76, 48]],
        min_new_tokens=5,
    )
    assert torch.equal(generate(model, ids, mask, **kw), _hf(hf, ids, mask, **kw))


def test_max_length_and_min_new_tokens(pair):
    model, hf = pair
    ids = torch.tensor([[5, 17, 42]])
    eos = _eos_hit(model)
    out = generate(model, ids, max_length=9, eos_token_id=None)
    assert out.shape == (1, 9)
    out = generate(
        model, ids, max_new_tokens=6, min_new_tokens=6, eos_token_id=eos, pad_token_id=PAD
    )
    assert out.shape == (1, 9) and not torch.isin(out[0, 3:], torch.tensor(eos)).any()


# -- sampling --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        dict(top_k=0, top_p=0.8, temperature=0.7),
        dict(top_k=0, min_p=0.1),
        dict(top_k=0, typical_p=0.9, temperature=1.3),
    ],
    ids=["top_p", "min_p", "typical"],
)
def test_sampling_matches_transformers_with_same_rng(pair, options):
    """Without top-k the draw is over the vocabulary as in transformers: same seed, same ids.
    (With top-k gpt2kit draws among the k candidates on CPU: see the tests below.)"""
    model, hf = pair
    ids, mask = left_padded_prompts(3)
    kw = dict(
        max_new_tokens=10,
        eos_token_id=_eos_hit(model)[0],
        pad_token_id=PAD,
        do_sample=True,
        **options,
    )
    torch.manual_seed(123)
    ours = generate(model, ids, mask, **kw)
    torch.manual_seed(123)
    ref = _hf(hf, ids, mask, **kw)
    assert torch.equal(ours, ref)


def test_top_k_draw_is_over_the_candidates_with_the_same_distribution():
    """`_sample` with a top-k warper: tokens only from each row's top k, frequencies equal
    to softmax over them, and a tie at the k-th score falls back to the full draw."""
    from gpt2kit.generation.processors import TopKLogitsWarper
    from gpt2kit.generation.search import _sample

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 300, generator=g) * 2
    scores = TopKLogitsWarper(5)(None, logits)
    draws = 20000
    rows = scores.repeat(draws // 4, 1)
    tokens = _sample(rows, rows.shape[0], None, g, top_k=5).view(-1, 4)
    expected = scores.softmax(-1)
    for r in range(4):
        seen = torch.bincount(tokens[:, r], minlength=300).float() / tokens.shape[0]
        assert set(tokens[:, r].tolist()) <= set(logits[r].topk(5).indices.tolist())
        assert float((seen - expected[r]).abs().max()) < 0.025  # ~4 sigma at 5000 draws
    tied = torch.zeros(1, 300)
    tied[0, :7] = 1.0  # seven-way tie: the warper keeps all 7
    out = _sample(TopKLogitsWarper(5)(None, tied).repeat(2000, 1), 2000, None, g, top_k=5)
    assert set(out.tolist()) == set(range(7))


def test_top_k_one_samples_the_greedy_tokens(pair):
    model, _ = pair
    ids, mask = left_padded_prompts(3)
    kw = dict(max_new_tokens=10, eos_token_id=None, pad_token_id=PAD)
    assert torch.equal(
        generate(model, ids, mask, do_sample=True, top_k=1, seed=3, **kw),
        generate(model, ids, mask, **kw),
    )


def test_sampling_seed_is_reproducible(pair):
    model, _ = pair
    ids, mask = left_padded_prompts(2)
    kw = dict(max_new_tokens=12, do_sample=True, top_k=0, eos_token_id=None, num_return_sequences=3)
    a = generate(model, ids, mask, seed=7, **kw)
    b = generate(model, ids, mask, generator=torch.Generator().manual_seed(7), **kw)
    c = generate(model, ids, mask, seed=8, **kw)
    assert a.shape == (6, ids.shape[1] + 12)
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- beam search -----------------------------------------------------------------------------
BEAM_CASES = [
    (dict(num_beams=2), "two"),
    (dict(num_beams=3, num_return_sequences=3, early_stopping=True), "two"),
    (dict(num_beams=4, num_return_sequences=2, early_stopping="never", length_penalty=1.5), "two"),
    (dict(num_beams=3, length_penalty=-0.5, no_repeat_ngram_size=3), "none"),
]
SLOW_BEAM_CASES = [(o, "none" if e == "two" else "two") for o, e in BEAM_CASES]


def _check_beam(model, hf, options, eos):
    eos_ids = None if eos == "none" else _eos_hit(model)
    ids, mask = left_padded_prompts(3)
    kw = dict(max_new_tokens=10, eos_token_id=eos_ids, pad_token_id=PAD, **options)
    assert torch.equal(generate(model, ids, mask, **kw), _hf(hf, ids, mask, **kw))
    one = ids[:1, mask[0].bool()]
    assert torch.equal(generate(model, one, **kw), _hf(hf, one, **kw))


@pytest.mark.parametrize(
    "options, eos", BEAM_CASES, ids=["b2", "b3-early", "b4-never", "b3-neg-lp-no-eos"]
)
def test_beam_search_matches_transformers(pair, options, eos):
    _check_beam(*pair, options, eos)


@pytest.mark.slow
@pytest.mark.parametrize("options, eos", BEAM_CASES + SLOW_BEAM_CASES)
def test_beam_search_matches_transformers_every_config(pairs, options, eos):
    _check_beam(*pairs, options, eos)


def test_beam_sampling_runs_and_is_reproducible(pair):
    model, _ = pair
    ids = torch.tensor([[5, 17, 42]])
    kw = dict(
        max_new_tokens=6,
        num_beams=3,
        do_sample=True,
        num_return_sequences=2,
        eos_token_id=None,
        seed=3,
    )
    a, b = generate(model, ids, **kw), generate(model, ids, **kw)
    assert a.shape == (2, 9) and torch.equal(a, b)


# -- cross-attention (conditional generation passes encoder states) -----------------------------
def test_encoder_hidden_states_greedy_and_beam_match_transformers(tmp_path):
    cfg = tiny_config(add_cross_attention=True, initializer_range=0.3)
    hf, folder = make_hf_twin(cfg, tmp_path / "m", seed=2)
    model = GPT2LMHeadModel.from_pretrained(folder)
    enc = torch.randn(2, 5, cfg.n_embd)
    ids = torch.tensor([[3, 4, 5], [6, 7, 8]])
    for kw in (dict(), dict(num_beams=3, num_return_sequences=2)):
        kw = dict(max_new_tokens=8, eos_token_id=None, pad_token_id=PAD, **kw)
        ours = generate(model, ids, encoder_hidden_states=enc, **kw)
        ref = _hf(hf, ids, encoder_hidden_states=enc, **kw)
        assert torch.equal(ours, ref)


# -- odds and ends ---------------------------------------------------------------------------
def test_empty_prompt_starts_from_bos(pair):
    model, _ = pair
    a = generate(model, None, max_new_tokens=4, eos_token_id=None)
    b = generate(
        model, torch.tensor([[model.config.bos_token_id]]), max_new_tokens=4, eos_token_id=None
    )
    assert torch.equal(a, b) and a[0, 0] == model.config.bos_token_id
    assert torch.equal(
        generate(model, torch.zeros(1, 0, dtype=torch.long), max_new_tokens=4, eos_token_id=None), a
    )


def test_model_generate_method_and_generation_config_default(pair):
    model, _ = pair
    ids = torch.tensor([[5, 17, 42]])
    model.generation_config = GenerationConfig(max_new_tokens=3, eos_token_id=None)
    try:
        assert model.generate(ids).shape == (1, 6)
        assert model.generate(ids, max_new_tokens=5).shape == (1, 8)  # per-call override wins
    finally:
        del model.generation_config


def test_output_is_an_ordinary_tensor(pair):
    model, _ = pair
    out = generate(model, torch.tensor([[1, 2]]), max_new_tokens=2, eos_token_id=None)
    assert not out.is_inference()


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(max_new_tokens=100), "lower max_new_tokens below 64"),  # alone too many
        (dict(max_new_tokens=62), "truncate the prompt to its last 2 tokens"),
        (dict(num_beams=0), "num_beams"),
        (dict(do_sample=True, top_p=1.5), "top_p"),
        (dict(do_sample=True, top_p=0.0), "top_p"),
        (dict(do_sample=True, temperature=0.0), "temperature"),
        (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
        (dict(num_return_sequences=2), "num_return_sequences"),
        (dict(early_stopping="sometimes"), "early_stopping"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(top_kk=3), "top_kk"),
        (dict(stop_strings=["x"]), "tokenizer"),
    ],
)
def test_bad_options_raise_clear_errors(pair, kw, word):
    model, _ = pair
    with pytest.raises(ValueError, match=word):
        generate(model, torch.tensor([[1, 2, 3]]), **kw)


def test_bad_inputs_raise(pair):
    model, _ = pair
    with pytest.raises(ValueError, match="attention_mask"):
        generate(model, torch.tensor([[1, 2, 3]]), torch.ones(1, 2), max_new_tokens=2)
    with pytest.raises(ValueError, match="all zeros"):
        generate(
            model, torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1, 1], [0, 0]]), max_new_tokens=2
        )
    with pytest.raises(ValueError, match="seed or generator"):
        generate(model, torch.tensor([[1]]), seed=1, generator=torch.Generator(), do_sample=True)


# -- GenerationConfig files --------------------------------------------------------------------
def test_generation_config_round_trips_with_transformers(tmp_path):
    import transformers

    ours = GenerationConfig(
        max_new_tokens=7, do_sample=True, top_k=4, eos_token_id=[3, 4], custom_key="kept"
    )
    ours.save_pretrained(tmp_path / "a")
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path / "a")
    assert (theirs.max_new_tokens, theirs.do_sample, theirs.top_k, theirs.eos_token_id) == (
        7,
        True,
        4,
        [3, 4],
    )
    assert GenerationConfig.from_pretrained(tmp_path / "a") == ours
    written = json.loads((tmp_path / "a" / "generation_config.json").read_text())
    assert "top_p" not in written and written["custom_key"] == "kept"  # defaults are not written

    transformers.GenerationConfig(num_beams=4, length_penalty=0.5, bos_token_id=1).save_pretrained(
        tmp_path / "b"
    )
    back = GenerationConfig.from_pretrained(tmp_path / "b")
    assert (back.num_beams, back.length_penalty, back.bos_token_id, back.top_k) == (4, 0.5, 1, 50)


def test_checkpoint_carries_generation_config(pair, tmp_path):
    model, _ = pair
    model.generation_config = GenerationConfig(max_new_tokens=4, eos_token_id=None)
    try:
        model.save_pretrained(tmp_path / "m")
    finally:
        del model.generation_config
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path / "m")
    assert loaded.generation_config.max_new_tokens == 4
    assert loaded.generate(torch.tensor([[1, 2]])).shape == (1, 6)


# -- weight layout: batch-1 decoding without the native kernel reads column-major copies ----
# (with the kernel, the decoder's arena: tests/test_native.py)
def _layouts(model):
    return {n: p.is_contiguous() for n, p in model.named_parameters() if p.dim() == 2}


def _without_kernel(monkeypatch):
    from gpt2kit import native

    monkeypatch.setattr(native, "load", lambda: None)


def test_batch1_generate_reads_column_major_copies_and_leaves_the_weights(tmp_path, monkeypatch):
    from gpt2kit import decode
    from gpt2kit.decode.decoder import _held

    _without_kernel(monkeypatch)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    batch = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    rows = generate(model, batch, max_new_tokens=6, eos_token_id=None)
    one = generate(model, ids, max_new_tokens=6, eos_token_id=None)
    held = _held[model]
    assert held.kind == "column"
    copy_of = {n: held.copy_of(p) for n, p in model.named_parameters()}
    assert not copy_of["transformer.h.0.attn.c_attn.weight"].is_contiguous()  # column-major
    assert not copy_of["transformer.wte.weight"].is_contiguous()  # the tied LM head too
    assert copy_of["transformer.wpe.weight"] is None  # position table: gathered by row
    assert copy_of["transformer.h.0.mlp.c_proj.weight"] is None  # narrowing: row-major
    assert all(_layouts(model).values())  # the model's own weights: untouched
    assert torch.equal(one[0], rows[0])  # same tokens either way
    model.save_pretrained(tmp_path / "m")
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "m")
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    model(ids, labels=ids).loss.backward()
    opt.step()
    model.eval()
    trained = generate(model, ids, max_new_tokens=6, eos_token_id=None)  # the new weights
    with decode.disabled():
        assert torch.equal(generate(model, ids, max_new_tokens=6, eos_token_id=None), trained)


@pytest.mark.parametrize("kernel", [True, False])
def test_decoding_under_inference_mode_leaves_trainable_weights(kernel, monkeypatch):
    if not kernel:
        _without_kernel(monkeypatch)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        generate(model, ids, max_new_tokens=2, eos_token_id=None)  # arena / column-major
        generate(model, ids.repeat(2, 1), max_new_tokens=2, eos_token_id=None)
    assert not any(p.is_inference() for p in model.parameters())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(ids, labels=ids).loss.backward()
    opt.step()  # in-place updates: would fail on inference tensors
    model.eval()
    with torch.inference_mode():  # the copies are refreshed from the trained weights
        generate(model, ids, max_new_tokens=2, eos_token_id=None)
