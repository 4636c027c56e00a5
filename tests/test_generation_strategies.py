"""`generate`'s strategies and options against `transformers`, token for token.

- Options `transformers` 5.x runs (processors, stopping criteria, `max_time`, its
  `GenerationConfig`, per-layer outputs and the cache, assisted and prompt-lookup
  decoding): compared live with `transformers.generate` on the same tiny random
  checkpoint (written by `transformers` at test time).
- Diverse beam search and contrastive search, which `transformers` 5.x moved to the Hub:
  compared with ids recorded from `transformers` 4.46.3 (the in-library implementation
  gpt2kit ported) on a checkpoint whose weights are drawn here from a fixed seed, so it
  does not depend on any library's init; plus cases that can be checked by hand (one beam
  per group and no penalty = greedy; a vanishing `penalty_alpha` = greedy).
- Sampling: the same seed draws the same tokens as `transformers` where both draw with
  `torch.multinomial` over the vocabulary (no top-k warper on CPU).
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
import transformers

from conftest import make_hf_twin
from gpt2kit import GPT2LMHeadModel
from gpt2kit.generation import GenerationConfig, generate
from gpt2kit.generation.stopping import StoppingCriteria, StoppingCriteriaList
from harness import left_padded_prompts, tiny_config

PAD = 98


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(gpt2kit model, transformers model) with the same random weights (peaked logits)."""
    cfg = tiny_config(initializer_range=0.3)
    hf, folder = make_hf_twin(cfg, tmp_path_factory.mktemp("strategies") / "m", seed=1)
    model = GPT2LMHeadModel.from_pretrained(folder)
    model._test_folder = folder
    return model, hf


def pair_folder(model):
    return model._test_folder


@pytest.fixture(scope="module")
def greedy_tokens(pair):
    """Tokens greedy decoding produces for the left-padded batch (used as EOS / biased ids)."""
    model, _ = pair
    ids, mask = left_padded_prompts(3)
    out = generate(model, ids, mask, max_new_tokens=10, eos_token_id=None, pad_token_id=PAD)
    return out[:, ids.shape[1] :]


def _both(pair, batch=3, max_new_tokens=10, **kw):
    model, hf = pair
    ids, mask = left_padded_prompts(batch)
    ours = generate(model, ids, mask, max_new_tokens=max_new_tokens, pad_token_id=PAD, **kw)
    with torch.no_grad():
        ref = hf.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=PAD,
            do_sample=kw.pop("do_sample", False),
            **kw,
        )
    return ours, ref


# -- processors, greedy and beam search -----------------------------------------------------
def _processor_cases(g):
    first = [int(g[0, 0]), int(g[1, 0])]
    common = [int(g[0, 1]), int(g[1, 2])]
    return {
        "suppress_tokens": dict(suppress_tokens=common),
        "begin_suppress_tokens": dict(begin_suppress_tokens=first),
        "forced_eos_token_id": dict(eos_token_id=common[0], forced_eos_token_id=common[0]),
        "sequence_bias-dict": dict(
            sequence_bias={(common[0],): -10.0, (int(g[0, 0]), int(g[0, 1])): 3.0, (7,): 4.0}
        ),
        "sequence_bias-list": dict(sequence_bias=[[[common[0]], -10.0], [[7], 4.0]]),
        "prefix_allowed_tokens_fn": dict(
            prefix_allowed_tokens_fn=lambda b, sent: [int(sent[-1]) % 50 + b, 3, 11]
        ),
        "all-with-eos": dict(
            eos_token_id=common,
            suppress_tokens=[first[0]],
            sequence_bias={(7,): 2.0},
            repetition_penalty=1.3,
            min_new_tokens=2,
        ),
    }


PROCESSOR_CASES = [
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_eos_token_id",
    "sequence_bias-dict",
    "sequence_bias-list",
    "prefix_allowed_tokens_fn",
    "all-with-eos",
]


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("case", PROCESSOR_CASES)
def test_processor_matches_transformers(pair, greedy_tokens, case, num_beams):
    kw = {"eos_token_id": None, **_processor_cases(greedy_tokens)[case]}
    ours, ref = _both(pair, num_beams=num_beams, **kw)
    assert torch.equal(ours, ref)
    plain, _ = _both(pair, num_beams=num_beams, eos_token_id=kw["eos_token_id"])
    assert not torch.equal(ours, plain), "the option changed nothing: the case tests nothing"


def test_forced_bos_and_begin_suppress_after_a_one_token_prompt(pair):
    model, hf = pair
    ids = torch.tensor([[5]])
    for kw in (dict(forced_bos_token_id=9), dict(forced_bos_token_id=9, begin_suppress_tokens=[3])):
        ours = generate(model, ids, max_new_tokens=5, eos_token_id=None, **kw)
        ref = hf.generate(ids, max_new_tokens=5, eos_token_id=None, do_sample=False, **kw)
        assert torch.equal(ours, ref) and int(ours[0, 1]) == 9


def test_sampling_with_new_processors_draws_transformers_tokens(pair, greedy_tokens):
    """Same global seed, same `torch.multinomial` draws (top_k=0: no CPU top-k shortcut)."""
    kw = dict(
        do_sample=True,
        top_k=0,
        eos_token_id=None,
        suppress_tokens=[int(greedy_tokens[0, 1])],
        sequence_bias={(7,): 2.0},
    )
    torch.manual_seed(5)
    model, hf = pair
    ids, mask = left_padded_prompts(3)
    ours = generate(model, ids, mask, max_new_tokens=10, pad_token_id=PAD, **kw)
    torch.manual_seed(5)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=PAD, **kw)
    assert torch.equal(ours, ref)


# -- stopping criteria and max_time -----------------------------------------------------------
class _LastIs(transformers.StoppingCriteria):
    def __init__(self, token):
        self.token = token

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids[:, -1] == self.token


@pytest.mark.parametrize("num_beams", [1, 2])
def test_stopping_criteria_match_transformers(pair, greedy_tokens, num_beams):
    stop = transformers.StoppingCriteriaList([_LastIs(int(greedy_tokens[0, 1]))])
    ours, ref = _both(
        pair, num_beams=num_beams, eos_token_id=int(greedy_tokens[1, 2]), stopping_criteria=stop
    )
    assert torch.equal(ours, ref)
    assert ours.shape[1] < left_padded_prompts(3)[0].shape[1] + 10  # it did stop early


def test_our_stopping_criteria_types_and_plain_callables(pair, greedy_tokens):
    token = int(greedy_tokens[0, 1])

    class Ours(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return input_ids[:, -1] == token

    a, ref = _both(pair, eos_token_id=PAD + 1, stopping_criteria=[_LastIs(token)])
    b, _ = _both(pair, eos_token_id=PAD + 1, stopping_criteria=StoppingCriteriaList([Ours()]))
    c, _ = _both(pair, eos_token_id=PAD + 1, stopping_criteria=[lambda ids, s: ids[:, -1] == token])
    assert torch.equal(a, ref) and torch.equal(b, ref) and torch.equal(c, ref)
    with pytest.raises(ValueError, match="one bool per row"):
        _both(pair, stopping_criteria=[lambda ids, s: torch.zeros(7, dtype=torch.bool)])


def test_max_time_stops_like_transformers(pair):
    """A limit that has passed by the first check: both stop after one token."""
    ours, ref = _both(pair, eos_token_id=None, max_time=1e-9)
    assert torch.equal(ours, ref) and ours.shape[1] == left_padded_prompts(3)[0].shape[1] + 1
    with pytest.raises(ValueError, match="max_time"):
        _both(pair, max_time=-1)


# -- transformers' GenerationConfig ----------------------------------------------------------
def test_transformers_generation_config_object(pair, greedy_tokens):
    eos = int(greedy_tokens[0, 1])
    hf_cfg = transformers.GenerationConfig(
        num_beams=2, max_new_tokens=10, eos_token_id=eos, pad_token_id=PAD, repetition_penalty=1.2
    )
    model, hf = pair
    ids, mask = left_padded_prompts(3)
    ours = generate(model, ids, mask, generation_config=hf_cfg)
    assert torch.equal(ours, model.generate(ids, attention_mask=mask, generation_config=hf_cfg))
    with torch.no_grad():
        assert torch.equal(ours, hf.generate(ids, attention_mask=mask, generation_config=hf_cfg))
    # keyword overrides still apply on top of it
    greedy = generate(model, ids, mask, generation_config=hf_cfg, num_beams=1)
    assert torch.equal(greedy, _both(pair, eos_token_id=eos, repetition_penalty=1.2)[1])


def test_transformers_option_we_do_not_implement_is_named(pair):
    model, _ = pair
    ids = torch.tensor([[1, 2, 3]])
    cfg = transformers.GenerationConfig(max_new_tokens=3, guidance_scale=2.0)
    with pytest.raises(ValueError, match="guidance_scale"):
        generate(model, ids, generation_config=cfg)
    with pytest.raises(ValueError, match="dola_layers"):
        generate(model, ids, generation_config=GenerationConfig(dola_layers="high"))
    with pytest.raises(ValueError, match="unknown option.*negative_prompt_ids"):
        generate(model, ids, negative_prompt_ids=ids)


def test_unknown_key_in_generation_config_json_warns(tmp_path, caplog):
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"max_new_tokens": 4, "my_library_knob": 3, "transformers_version": "5.0"})
    )
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        cfg = GenerationConfig.from_pretrained(tmp_path)
    assert "my_library_knob" in caplog.text and "max_new_tokens" not in caplog.text
    assert cfg.extra == {"my_library_knob": 3} and cfg.max_new_tokens == 4


def test_sequence_bias_round_trips_through_json(tmp_path):
    cfg = GenerationConfig(sequence_bias={(1, 2): -1.0})
    cfg.save_pretrained(tmp_path)
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path)
    assert GenerationConfig.from_transformers(theirs).sequence_bias == [[[1, 2], -1.0]]


# -- per-layer outputs and the cache ---------------------------------------------------------
@pytest.mark.parametrize("num_beams", [1, 2])
def test_hidden_states_attentions_and_cache_match_transformers(pair, num_beams):
    model, hf = pair
    ids, mask = left_padded_prompts(3)
    kw = dict(
        max_new_tokens=4,
        eos_token_id=None,
        pad_token_id=PAD,
        num_beams=num_beams,
        return_dict_in_generate=True,
        output_hidden_states=True,
        output_attentions=True,
    )
    ours = generate(model, ids, mask, **kw)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    assert torch.equal(ours.sequences, ref.sequences)
    assert len(ours.hidden_states) == len(ref.hidden_states) == 4
    real = mask.bool().repeat_interleave(num_beams, 0)  # pad positions hold nothing meaningful
    for step, (a_step, b_step) in enumerate(zip(ours.hidden_states, ref.hidden_states)):
        assert len(a_step) == len(b_step) == model.config.n_layer + 1
        for a, b in zip(a_step, b_step):
            assert a.shape == b.shape
            a, b = (a[real], b[real]) if step == 0 else (a, b)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for step, (a_step, b_step) in enumerate(zip(ours.attentions, ref.attentions)):
        for a, b in zip(a_step, b_step):
            assert a.shape == b.shape
            if step == 0:
                a, b = a.transpose(1, 2)[real], b.transpose(1, 2)[real]
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    if num_beams == 1:  # beam search's final cache holds the running beams in both
        length = ours.sequences.shape[1] - 1  # every token but the last
        cols = torch.cat([mask.bool(), torch.ones(3, length - mask.shape[1], dtype=torch.bool)], 1)
        for (k, v), layer in zip(ours.past_key_values.to_legacy(), ref.cache.layers):
            assert k.shape == layer.keys.shape and k.shape[2] == length
            for a, b in ((k, layer.keys), (v, layer.values)):
                a, b = a.transpose(1, 2)[cols], b.transpose(1, 2)[cols]
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert ours.cache is ours.past_key_values  # transformers 5's name for it


# -- assisted and prompt-lookup decoding ------------------------------------------------------
class _Calls:
    def __init__(self, model):
        self.n = 0
        self.handle = model.register_forward_pre_hook(self.hook)

    def hook(self, module, args):
        self.n += 1

    def close(self):
        self.handle.remove()


@pytest.mark.parametrize("eos", [False, True])
def test_assisted_decoding_equals_greedy_and_transformers(pair, greedy_tokens, tmp_path, eos):
    model, hf = pair
    eos_id = int(greedy_tokens[0, 6]) if eos else None
    # A different (smaller) assistant: a one-layer model of the same vocabulary.
    draft_hf, folder = make_hf_twin(
        tiny_config(n_layer=1, initializer_range=0.3), tmp_path / "a", seed=3
    )
    draft = GPT2LMHeadModel.from_pretrained(folder)
    ids = left_padded_prompts(1)[0]
    kw = dict(max_new_tokens=20, eos_token_id=eos_id, pad_token_id=PAD)
    greedy = generate(model, ids, **kw)
    assert torch.equal(
        generate(model, ids, assistant_model=draft, num_assistant_tokens=3, **kw), greedy
    )
    with torch.no_grad():
        ref = hf.generate(ids, assistant_model=draft_hf, do_sample=False, **kw)
    assert torch.equal(greedy, ref)
    # A copy of the model as assistant: every draft is accepted, one main forward per
    # 4 drafted tokens + the model's own next one.
    twin = GPT2LMHeadModel.from_pretrained(pair_folder(model))
    calls = _Calls(model)
    try:
        same = generate(
            model, ids, assistant_model=twin, num_assistant_tokens=4,
            assistant_confidence_threshold=0.0, **kw,
        )  # fmt: skip
    finally:
        calls.close()
    assert torch.equal(same, greedy)
    new = greedy.shape[1] - ids.shape[1]
    assert calls.n == -(-new // 5)


def test_prompt_lookup_equals_greedy_and_transformers(pair):
    model, hf = pair
    # A prompt whose continuation repeats it (the model loops), so lookups hit.
    ids = torch.tensor([[5, 17, 42, 8, 5, 17, 42, 8, 5, 17]])
    kw = dict(max_new_tokens=24, eos_token_id=None, pad_token_id=PAD)
    greedy = generate(model, ids, **kw)
    calls = _Calls(model)
    try:
        ours = generate(model, ids, prompt_lookup_num_tokens=5, **kw)
    finally:
        calls.close()
    assert torch.equal(ours, greedy)
    with torch.no_grad():
        ref = hf.generate(ids, prompt_lookup_num_tokens=5, do_sample=False, **kw)
    assert torch.equal(ref, greedy)
    assert calls.n < 24  # some drafts were accepted


def test_assisted_decoding_stops_inside_an_accepted_draft(pair):
    """A stop string completed in the middle of an accepted draft ends there, as greedy does."""
    model, _ = pair

    class Letters:
        def decode(self, ids, **kw):
            return "".join(chr(97 + int(i) % 26) for i in ids)

    ids = torch.tensor([[5, 17, 42, 8]])
    greedy = generate(model, ids, max_new_tokens=12, eos_token_id=None)
    text = Letters().decode(greedy[0, 4 + 5 : 4 + 7].tolist())
    kw = dict(max_new_tokens=12, eos_token_id=None, stop_strings=text, tokenizer=Letters())
    stopped = generate(model, ids, **kw)
    assert stopped.shape[1] <= 4 + 7
    assert torch.equal(
        generate(model, ids, assistant_model=model, num_assistant_tokens=8, **kw), stopped
    )


def test_assisted_decoding_errors(pair):
    model, _ = pair
    ids, mask = left_padded_prompts(2)
    with pytest.raises(ValueError, match="batch 1"):
        generate(model, ids, mask, assistant_model=model, max_new_tokens=3)
    with pytest.raises(ValueError, match="greedy"):
        generate(model, ids[:1], assistant_model=model, do_sample=True, max_new_tokens=3)
    other = GPT2LMHeadModel(tiny_config(vocab_size=120)).eval()
    with pytest.raises(ValueError, match="vocab_size"):
        generate(model, ids[:1], assistant_model=other, max_new_tokens=3)


# -- diverse beam search and contrastive search: transformers 4.46.3's ids ---------------------
def _fixed_model() -> GPT2LMHeadModel:
    """Weights drawn in parameter-name order from one seed: no library's init involved."""
    model = GPT2LMHeadModel(tiny_config()).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            if ".ln" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.3 * noise)
    return model


EARLY_EOS = [9, 0]
FIXED_CASES = {
    "diverse-1x4x2": dict(batch=1, kw=dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, max_new_tokens=8, eos_token_id=None)),
    "diverse-2x6x3-eos": dict(batch=2, kw=dict(num_beams=6, num_beam_groups=3, diversity_penalty=0.5, max_new_tokens=10, eos_token_id="early", num_return_sequences=3)),
    "diverse-early-true": dict(batch=3, kw=dict(num_beams=4, num_beam_groups=2, diversity_penalty=2.0, max_new_tokens=10, eos_token_id="early", early_stopping=True)),
    "diverse-never-lp": dict(batch=2, kw=dict(num_beams=4, num_beam_groups=4, diversity_penalty=0.7, max_new_tokens=9, eos_token_id="early", early_stopping="never", length_penalty=1.5)),
    "diverse-penalties": dict(batch=2, kw=dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, max_new_tokens=8, eos_token_id="early", repetition_penalty=1.3, no_repeat_ngram_size=2)),
    "contrastive-1": dict(batch=1, kw=dict(penalty_alpha=0.6, top_k=4, max_new_tokens=12, eos_token_id=None)),
    "contrastive-padded-eos": dict(batch=3, kw=dict(penalty_alpha=0.5, top_k=5, max_new_tokens=12, eos_token_id="early")),
    "contrastive-ngram": dict(batch=2, kw=dict(penalty_alpha=0.8, top_k=3, max_new_tokens=10, eos_token_id=None, no_repeat_ngram_size=2)),
}  # fmt: skip
# New tokens `transformers` 4.46.3 returned for FIXED_CASES on `_fixed_model()` (eager
# attention, left_padded_prompts(batch), pad_token_id=98), recorded once: 4.46.3 is the
# last release where both strategies ship inside the library.
REFERENCE_4_46_3 = {
    "diverse-1x4x2": [[29, 62, 13, 9, 36, 7, 13, 9]],
    "diverse-2x6x3-eos": [
        [29, 62, 13, 9, 98, 98, 98, 98, 98, 98],
        [13, 9, 98, 98, 98, 98, 98, 98, 98, 98],
        [40, 13, 9, 98, 98, 98, 98, 98, 98, 98],
        [13, 7, 66, 62, 13, 40, 6, 3, 9, 98],
        [13, 7, 66, 62, 13, 40, 6, 3, 23, 13],
        [62, 70, 29, 66, 66, 13, 70, 9, 98, 98],
    ],
    "diverse-early-true": [
        [29, 62, 13, 9, 98, 98, 98, 98, 98, 98],
        [13, 7, 66, 62, 13, 40, 6, 3, 9, 98],
        [13, 62, 44, 13, 89, 29, 29, 13, 62, 9],
    ],
    "diverse-never-lp": [[29, 62, 62, 80, 62, 7, 13, 9, 98], [87, 23, 35, 35, 13, 40, 21, 87, 70]],
    "diverse-penalties": [[29, 62, 13, 9, 98, 98, 98, 98], [13, 7, 66, 62, 13, 40, 6, 3]],
    "contrastive-1": [[13, 43, 47, 6, 60, 0, 0, 27, 23, 29, 13, 29]],
    "contrastive-padded-eos": [
        [13, 43, 47, 6, 60, 0, 98, 98, 98, 98, 98, 98],
        [70, 13, 16, 4, 70, 13, 40, 99, 7, 66, 54, 66],
        [66, 13, 6, 47, 66, 66, 48, 13, 2, 35, 44, 27],
    ],
    "contrastive-ngram": [
        [13, 43, 47, 6, 21, 0, 0, 27, 77, 29],
        [62, 70, 29, 70, 13, 70, 44, 12, 23, 29],
    ],
}


@pytest.fixture(scope="module")
def fixed():
    return _fixed_model()


@pytest.mark.parametrize("case", list(FIXED_CASES))
def test_matches_transformers_4_46_ids(fixed, case):
    spec = FIXED_CASES[case]
    kw = dict(spec["kw"])
    if kw["eos_token_id"] == "early":
        kw["eos_token_id"] = EARLY_EOS
    ids, mask = left_padded_prompts(spec["batch"])
    out = generate(fixed, ids, mask, pad_token_id=PAD, **kw)
    assert out[:, ids.shape[1] :].tolist() == REFERENCE_4_46_3[case]


def test_diverse_beam_search_with_one_beam_per_group_and_no_penalty_is_greedy(fixed):
    """Every group starts from the same beam and none is penalized: each is greedy search."""
    ids, mask = left_padded_prompts(3)
    kw = dict(max_new_tokens=8, eos_token_id=None, pad_token_id=PAD)
    greedy = generate(fixed, ids, mask, **kw)
    diverse = generate(fixed, ids, mask, num_beams=3, num_beam_groups=3, **kw)
    assert torch.equal(diverse, greedy)
    # with a penalty the groups must differ at the first step
    out = generate(
        fixed, ids, mask, num_beams=3, num_beam_groups=3, diversity_penalty=100.0,
        num_return_sequences=3, **kw,
    )  # fmt: skip
    first = out[:, ids.shape[1]].view(3, 3)
    assert all(len(set(row.tolist())) == 3 for row in first)


def test_contrastive_search_with_vanishing_alpha_is_greedy(fixed):
    ids, mask = left_padded_prompts(3)
    kw = dict(max_new_tokens=10, eos_token_id=EARLY_EOS, pad_token_id=PAD)
    greedy = generate(fixed, ids, mask, **kw)
    assert torch.equal(generate(fixed, ids, mask, penalty_alpha=1e-9, top_k=4, **kw), greedy)


def test_contrastive_search_scores_and_cache(fixed):
    ids, mask = left_padded_prompts(2)
    out = generate(
        fixed, ids, mask, penalty_alpha=0.6, top_k=4, max_new_tokens=6, eos_token_id=None,
        pad_token_id=PAD, return_dict_in_generate=True, output_scores=True,
    )  # fmt: skip
    assert len(out.scores) == 6 and out.scores[0].shape == (2, 100)
    # (the chosen candidate was already fed: the cache holds every token, as in transformers 4.x)
    assert out.past_key_values.get_seq_length() == out.sequences.shape[1]


def test_strategy_option_errors(fixed):
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="divisible by num_beam_groups"):
        generate(fixed, ids, num_beams=4, num_beam_groups=3, max_new_tokens=2)
    with pytest.raises(ValueError, match="diversity_penalty applies"):
        generate(fixed, ids, num_beams=4, diversity_penalty=1.0, max_new_tokens=2)
    with pytest.raises(ValueError, match="penalty_alpha"):
        generate(fixed, ids, penalty_alpha=2.0, max_new_tokens=2)
    with pytest.raises(ValueError, match="slide"):
        generate(fixed, ids, penalty_alpha=0.5, top_k=3, max_new_tokens=2, context_overflow="slide")


# -- generation inputs (issue 18) ------------------------------------------------------------
def test_min_new_tokens_above_max_new_tokens_is_an_error(fixed):
    with pytest.raises(ValueError, match=r"min_new_tokens \(5\) exceeds max_new_tokens \(3\)"):
        generate(fixed, torch.tensor([[1, 2]]), max_new_tokens=3, min_new_tokens=5)
    with pytest.raises(ValueError, match="min_new_tokens"):  # max_new derived from max_length
        generate(fixed, torch.tensor([[1, 2]]), max_length=4, min_new_tokens=5)


@pytest.mark.parametrize("seed", [2**64, -1, 1.5, "7", True])
def test_seed_outside_the_range_names_the_seed(fixed, seed):
    with pytest.raises(
        ValueError, match=rf"seed must be an int in 0\.\.2\*\*64-1, got seed={seed!r}"
    ):
        generate(fixed, torch.tensor([[1, 2]]), max_new_tokens=2, do_sample=True, seed=seed)


def test_largest_seed_works(fixed):
    a = generate(fixed, torch.tensor([[1, 2]]), max_new_tokens=4, do_sample=True, seed=2**64 - 1)
    b = generate(fixed, torch.tensor([[1, 2]]), max_new_tokens=4, do_sample=True, seed=2**64 - 1)
    assert torch.equal(a, b)


def test_python_lists_as_input_ids(fixed):
    kw = dict(max_new_tokens=4, eos_token_id=None, pad_token_id=PAD)
    ids, mask = left_padded_prompts(2)
    as_tensor = generate(fixed, ids, mask, **kw)
    assert torch.equal(generate(fixed, ids.tolist(), mask.tolist(), **kw), as_tensor)
    assert torch.equal(fixed.generate(ids.tolist(), attention_mask=mask.tolist(), **kw), as_tensor)
    assert torch.equal(
        generate(fixed, [5, 6, 7], **kw), generate(fixed, torch.tensor([[5, 6, 7]]), **kw)
    )
    with pytest.raises(
        ValueError, match=r"input_ids rows have different lengths \(2, 3\).*attention_mask"
    ):
        generate(fixed, [[1, 2, 3], [4, 5]], **kw)
    with pytest.raises(ValueError, match="input_ids must hold integers"):
        generate(fixed, [[1.5, 2.0]], **kw)
    with pytest.raises(ValueError, match="input_ids must be a tensor or a"):
        generate(fixed, [["a", "b"]], **kw)


def test_user_processor_of_a_built_in_type_replaces_it(pair):
    """`transformers`' merge rule: the user's instance runs in the built-in's place, once."""
    from gpt2kit.generation import SuppressTokensLogitsProcessor

    calls = []
    mine = SuppressTokensLogitsProcessor([7])
    ours, _ = _both(pair, eos_token_id=None, suppress_tokens=[3], logits_processor=[mine])
    want, _ = _both(pair, eos_token_id=None, suppress_tokens=[7])
    assert torch.equal(ours, want)  # [3] was replaced by the user's [7]
    both, _ = _both(
        pair,
        eos_token_id=None,
        logits_processor=[lambda i, s: calls.append(1) or s, lambda i, s: calls.append(2) or s],
    )
    assert calls[:2] == [1, 2]  # two plain callables both run


def test_static_cache_with_a_strategy_it_cannot_run_is_named(fixed):
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="cache_implementation=None"):
        generate(
            fixed, ids, penalty_alpha=0.5, top_k=3, max_new_tokens=2,
            cache_implementation="static",
        )  # fmt: skip
    with pytest.raises(ValueError, match="output_attentions / output_hidden_states"):
        generate(
            fixed, ids, max_new_tokens=2, cache_implementation="static",
            return_dict_in_generate=True, output_hidden_states=True,
        )  # fmt: skip


def test_diverse_beam_scores_and_max_time_match_transformers_4_46(fixed):
    """`sequences_scores`, and `max_time` (open beams finalized, EOS appended), as 4.46.3 gave."""
    ids, mask = left_padded_prompts(2)
    kw = dict(pad_token_id=PAD, eos_token_id=EARLY_EOS, max_new_tokens=10)
    out = generate(
        fixed, ids, mask, num_beams=6, num_beam_groups=3, diversity_penalty=0.5,
        num_return_sequences=3, return_dict_in_generate=True, output_scores=True, **kw,
    )  # fmt: skip
    want = [-1.69335, -1.70385, -1.7153, -1.99693, -2.04948, -2.10752]
    torch.testing.assert_close(out.sequences_scores, torch.tensor(want), atol=1e-5, rtol=0)
    assert len(out.scores) == 10 and out.scores[0].shape == (12, 100)
    timed = generate(
        fixed, ids, mask, num_beams=4, num_beam_groups=2, diversity_penalty=1.0, max_time=1e-9, **kw
    )
    assert timed[:, ids.shape[1] :].tolist() == [[13, 9], [13, 9]]


def test_contrastive_scores_match_transformers_4_46(fixed):
    ids, mask = left_padded_prompts(2)
    out = generate(
        fixed, ids, mask, pad_token_id=PAD, penalty_alpha=0.6, top_k=4, max_new_tokens=6,
        eos_token_id=None, return_dict_in_generate=True, output_scores=True, output_logits=True,
    )  # fmt: skip
    # per-step sums of the (finite) scores and of the raw logits 4.46.3 returned
    want = [-1.732, -21.781, 3.828, 14.361, 6.658, 14.662]
    got = [float(s[torch.isfinite(s)].sum()) for s in out.scores]
    assert got == pytest.approx(want, abs=2e-3)
    assert [float(x.sum()) for x in out.logits] == pytest.approx(want, abs=2e-3)


@pytest.mark.parametrize(
    "option", [dict(penalty_alpha=0.5, top_k=3), dict(prompt_lookup_num_tokens=3)]
)
def test_stream_generate_refuses_strategies_it_does_not_run(fixed, option):
    from gpt2kit.generation import stream_generate

    class Bytes:
        def encode(self, text):
            return [ord(c) % 90 for c in text]

        def decode(self, ids, **kw):
            return "".join(chr(65 + int(i) % 26) for i in ids)

    with pytest.raises(ValueError, match="stream_generate runs greedy decoding or sampling"):
        list(stream_generate(fixed, Bytes(), "abc", max_new_tokens=3, **option))


def test_attention_mask_values_other_than_0_1_are_an_error(fixed):
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"attention_mask must hold 1 .* and 0 .* only"):
        generate(fixed, ids, torch.tensor([[0, 2, 1]]), max_new_tokens=2)
    ok = generate(fixed, ids, torch.tensor([[0.0, 1.0, 1.0]]), max_new_tokens=2, pad_token_id=PAD)
    assert ok.shape == (1, 5)


def test_contrastive_hidden_states_and_attentions_match_transformers_4_46(fixed):
    """The prompt's per-layer outputs, then each kept candidate's (sums recorded from 4.46.3)."""
    ids, mask = left_padded_prompts(2)
    out = generate(
        fixed, ids, mask, pad_token_id=PAD, penalty_alpha=0.6, top_k=4, max_new_tokens=5,
        eos_token_id=None, return_dict_in_generate=True, output_hidden_states=True,
        output_attentions=True,
    )  # fmt: skip
    real = mask.bool()
    assert [[list(h.shape) for h in s] for s in out.hidden_states][:2] == [
        [[2, 6, 32], [2, 6, 32], [2, 6, 32]],
        [[2, 1, 32], [2, 1, 32], [2, 1, 32]],
    ]
    assert [[list(a.shape) for a in s] for s in out.attentions][:2] == [
        [[2, 4, 6, 6], [2, 4, 6, 6]],
        [[2, 4, 1, 7], [2, 4, 1, 7]],
    ]
    assert [float(h[real].sum()) for h in out.hidden_states[0]] == pytest.approx(
        [9.22, -5.32, 12.723], abs=2e-3
    )
    later = [[float(h.sum()) for h in s] for s in out.hidden_states[1:]]
    want = [
        [1.398, -24.15, 1.91],
        [0.802, -13.155, 4.227],
        [-2.97, -9.058, 2.328],
        [0.754, 4.068, 2.032],
    ]
    assert all(a == pytest.approx(b, abs=2e-3) for a, b in zip(later, want, strict=True))


def test_diverse_beam_hidden_states_and_scores_match_transformers_4_46(fixed):
    ids, mask = left_padded_prompts(2)
    out = generate(
        fixed, ids, mask, pad_token_id=PAD, num_beams=4, num_beam_groups=2, diversity_penalty=1.0,
        max_new_tokens=5, eos_token_id=EARLY_EOS, return_dict_in_generate=True,
        output_hidden_states=True, output_scores=True,
    )  # fmt: skip
    assert out.sequences[:, ids.shape[1] :].tolist() == [[29, 62, 62, 80, 62], [13, 7, 66, 62, 13]]
    real = mask.bool().repeat_interleave(4, 0)
    first = [float(h[real].sum()) for h in out.hidden_states[0]]
    assert first == pytest.approx([36.881, -21.281, 50.892], abs=2e-3)
    later = [[float(h.sum()) for h in s] for s in out.hidden_states[1:]]
    want = [
        [9.492, -31.187, 8.461],
        [7.319, 90.048, 11.168],
        [-2.652, 123.652, 10.978],
        [2.046, 25.344, 8.869],
    ]
    assert all(a == pytest.approx(b, abs=2e-3) for a, b in zip(later, want, strict=True))
    sums = [float(s[torch.isfinite(s)].sum()) for s in out.scores]
    assert sums == pytest.approx([-4644.59, -4688.99, -4603.71, -4703.32, -4618.64], abs=0.02)
    assert out.beam_indices is None  # not tracked for diverse beam search (documented)
