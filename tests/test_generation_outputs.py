"""`generate` extras: `return_dict_in_generate` outputs, `context_overflow="slide"`, and
dropping finished rows from the computed batch.

Outputs are checked against `transformers.generate` on the same checkpoint (scores and
logits to 1e-5). The sliding window has no `transformers` counterpart: every new token is
checked against a direct forward of the model on the context the window held. Dropping
finished rows must not change a single id: each case compares against the plain loop
(`_COMPACT_FRACTION = None`) and a forward hook proves rows were dropped.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_hf_twin
from gpt2kit import GenerateOutput, GPT2LMHeadModel
from gpt2kit.generation import GenerationConfig, generate
from gpt2kit.generation import sampling as search_module
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
    cfg = tiny_config(initializer_range=0.3)
    hf, folder = make_hf_twin(cfg, tmp_path_factory.mktemp("out") / "m", seed=1)
    return GPT2LMHeadModel.from_pretrained(folder), hf


def _early_tokens(model, ids, mask, step: int = 2) -> list[int]:
    """Tokens that greedy decoding produces at `step` in some rows: EOS ids that get hit."""
    out = generate(model, ids, mask, max_new_tokens=step + 1, eos_token_id=None, pad_token_id=PAD)
    return sorted({int(t) for t in out[: max(1, ids.shape[0] // 2), ids.shape[1] + step]})


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# -- return_dict_in_generate -------------------------------------------------------------------
DICT = dict(return_dict_in_generate=True, output_scores=True, output_logits=True)


def _check_outputs(ours, ref, beams: bool):
    assert isinstance(ours, GenerateOutput)
    assert torch.equal(ours.sequences, ref.sequences)
    assert len(ours.scores) == len(ref.scores) == len(ours.logits) == len(ref.logits)
    for a, b in zip(ours.scores, ref.scores):
        _close(a, b)
    for a, b in zip(ours.logits, ref.logits):
        _close(a, b)
    if beams:
        _close(ours.sequences_scores, ref.sequences_scores)
        assert torch.equal(ours.beam_indices, ref.beam_indices.long())
    else:
        assert ours.sequences_scores is None and ours.beam_indices is None


def test_greedy_scores_and_logits_match_transformers(pair):
    model, hf = pair
    ids, mask = left_padded_prompts(3)
    eos = _early_tokens(model, ids, mask)
    kw = dict(
        max_new_tokens=10,
        eos_token_id=eos,
        pad_token_id=PAD,
        repetition_penalty=1.3,
        min_new_tokens=3,
        **DICT,
    )
    ours = generate(model, ids, mask, **kw)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    _check_outputs(ours, ref, beams=False)
    assert not torch.equal(ours.scores[0], ours.logits[0])  # processed != raw
    assert ours[0] is ours.sequences and ours["scores"] is ours.scores


def test_sampling_scores_match_transformers_with_same_rng(pair):
    model, hf = pair
    ids, mask = left_padded_prompts(3)
    kw = dict(
        max_new_tokens=8,
        eos_token_id=_early_tokens(model, ids, mask),
        pad_token_id=PAD,
        do_sample=True,
        top_k=0,  # (with top-k the draw is over the candidates: another random stream)
        top_p=0.9,
        temperature=0.8,
        **DICT,
    )
    torch.manual_seed(5)
    ours = generate(model, ids, mask, **kw)
    torch.manual_seed(5)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask, **kw)
    _check_outputs(ours, ref, beams=False)


@pytest.mark.parametrize(
    "options",
    [
        dict(num_beams=3, num_return_sequences=2),
        dict(num_beams=2, length_penalty=1.5, early_stopping=True),
    ],
    ids=["b3-r2", "b2-lp"],
)
def test_beam_outputs_match_transformers(pair, options):
    model, hf = pair
    ids, mask = left_padded_prompts(2)
    kw = dict(
        max_new_tokens=8,
        eos_token_id=_early_tokens(model, ids, mask, step=1),
        pad_token_id=PAD,
        **options,
        **DICT,
    )
    ours = generate(model, ids, mask, **kw)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    _check_outputs(ours, ref, beams=True)
    assert ours.beam_indices.shape == (ours.sequences.shape[0], ours.sequences.shape[1] - 6)


def test_default_return_and_partial_outputs(pair):
    model, _ = pair
    ids = torch.tensor([[5, 17, 42]])
    kw = dict(max_new_tokens=4, eos_token_id=None)
    plain = generate(model, ids, **kw)
    assert isinstance(plain, torch.Tensor)
    out = generate(model, ids, return_dict_in_generate=True, **kw)
    assert torch.equal(out.sequences, plain) and out.scores is None and out.logits is None
    # (sequences, the cache), as transformers' GenerateDecoderOnlyOutput
    assert [x is y for x, y in zip(out.to_tuple(), (out.sequences, out.past_key_values))] == [
        True,
        True,
    ]
    assert out.past_key_values.get_seq_length() == plain.shape[1] - 1  # all but the last token
    beam = generate(model, ids, num_beams=2, return_dict_in_generate=True, **kw)
    assert beam.sequences_scores is None and beam.beam_indices is not None  # as transformers
    # output_* alone (without return_dict_in_generate) changes nothing, as in transformers
    assert torch.equal(generate(model, ids, output_scores=True, **kw), plain)
    model.generation_config = GenerationConfig(return_dict_in_generate=True, output_logits=True)
    try:
        out = model.generate(ids, **kw)
        assert len(out.logits) == 4 and out.scores is None
    finally:
        del model.generation_config
    with pytest.raises(ValueError, match="output_scores"):
        generate(model, ids, output_scores="yes", **kw)


def test_output_fields_round_trip_with_transformers(tmp_path):
    import transformers

    ours = GenerationConfig(
        return_dict_in_generate=True, output_scores=True, context_overflow="slide", slide_stride=8
    )
    ours.save_pretrained(tmp_path / "a")
    written = json.loads((tmp_path / "a" / "generation_config.json").read_text())
    assert "output_logits" not in written and written["context_overflow"] == "slide"
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path / "a")
    assert theirs.return_dict_in_generate and theirs.output_scores
    assert GenerationConfig.from_pretrained(tmp_path / "a") == ours
    transformers.GenerationConfig(output_logits=True, return_dict_in_generate=True).save_pretrained(
        tmp_path / "b"
    )
    back = GenerationConfig.from_pretrained(tmp_path / "b")
    assert back.output_logits and back.return_dict_in_generate and not back.output_scores


# -- context_overflow="slide" ------------------------------------------------------------------
N_POS = 16


@pytest.fixture(scope="module")
def short_model():
    """A model with 16 positions, so the window fills within a few steps."""
    torch.manual_seed(3)
    return GPT2LMHeadModel(tiny_config(n_positions=N_POS, initializer_range=0.3)).eval()


def _check_every_step_against_window(model, out, mask, T, stride):
    """Each new greedy token is the argmax of a direct forward on the window that held it."""
    window = N_POS - stride
    base, reencodes = max(0, T - N_POS), []
    for c in range(T, out.shape[1]):
        if c - base > N_POS:
            base = c - window
            reencodes.append(c)
        for r in range(out.shape[0]):
            ctx = out[r, base:c][mask[r, base:c].bool()]
            with torch.no_grad():
                logits = model(ctx[None]).logits[0, -1]
            assert int(logits.argmax()) == int(out[r, c]), (r, c)
    return reencodes


@pytest.mark.parametrize("stride", [None, 1, 7])
def test_slide_matches_direct_forward_on_each_window(short_model, stride):
    model = short_model
    ids = torch.tensor([[5, 17, 42, 8, 3, 11]])
    kw = dict(eos_token_id=None, context_overflow="slide", slide_stride=stride)
    out = generate(model, ids, max_new_tokens=30, **kw)
    assert out.shape == (1, 36) and torch.equal(out[:, :6], ids)
    plain = generate(model, ids, max_new_tokens=N_POS - 6, eos_token_id=None)
    assert torch.equal(out[:, :N_POS], plain)  # identical until the window first fills
    s = stride if stride is not None else N_POS // 4
    mask = torch.ones_like(out)
    reencodes = _check_every_step_against_window(model, out, mask, 6, s)
    assert reencodes[0] == N_POS + 1 and len(reencodes) >= 2


def test_slide_padded_batch_and_long_prompt(short_model):
    model = short_model
    ids, mask = left_padded_prompts(3, lengths=(6, 3, 5))
    out = generate(
        model,
        ids,
        mask,
        max_new_tokens=20,
        eos_token_id=None,
        pad_token_id=PAD,
        context_overflow="slide",
    )
    assert out.shape == (3, 26)
    full_mask = torch.cat([mask, torch.ones(3, 20, dtype=torch.long)], 1)
    _check_every_step_against_window(model, out, full_mask, 6, N_POS // 4)

    long = torch.randint(1, PAD, (1, 21), generator=torch.Generator().manual_seed(1))
    out = generate(model, long, max_new_tokens=9, eos_token_id=None, context_overflow="slide")
    assert out.shape == (1, 30) and torch.equal(out[:, :21], long)  # the whole prompt is kept
    _check_every_step_against_window(model, out, torch.ones_like(out), 21, N_POS // 4)


def test_slide_sampling_and_beam_search_run(short_model):
    model = short_model
    ids = torch.tensor([[5, 17, 42]])
    kw = dict(max_new_tokens=40, eos_token_id=None, context_overflow="slide")
    a = generate(model, ids, do_sample=True, seed=1, **kw)
    assert a.shape == (1, 43) and torch.equal(a, generate(model, ids, do_sample=True, seed=1, **kw))
    beams = generate(model, ids, num_beams=3, num_return_sequences=2, **kw)
    assert beams.shape == (2, 43) and torch.equal(beams[:, :3], ids.expand(2, 3))
    # Within the window beam search is untouched by the option.
    short = dict(kw, max_new_tokens=N_POS - 3)
    assert torch.equal(
        generate(model, ids, num_beams=3, **short),
        generate(model, ids, num_beams=3, **dict(short, context_overflow="error")),
    )


def test_overflow_errors(short_model):
    ids = torch.tensor([[5, 17, 42]])
    with pytest.raises(ValueError, match='context_overflow="slide"'):
        generate(short_model, ids, max_new_tokens=N_POS)
    with pytest.raises(ValueError, match="context_overflow"):
        generate(short_model, ids, max_new_tokens=2, context_overflow="wrap")
    with pytest.raises(ValueError, match="slide_stride"):
        generate(short_model, ids, max_new_tokens=2, context_overflow="slide", slide_stride=N_POS)
    with pytest.raises(ValueError, match="slide_stride"):
        generate(short_model, ids, max_new_tokens=2, slide_stride=0)


# -- dropping finished rows --------------------------------------------------------------------
class _BatchSizes:
    """Forward hook recording the batch size of every backbone call."""

    def __init__(self, model):
        self.sizes: list[int] = []
        self.handle = model.transformer.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        ids = kwargs.get("input_ids")
        self.sizes.append((ids if ids is not None else args[0]).shape[0])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _plain(monkeypatch, fn):
    with monkeypatch.context() as m:
        m.setattr(search_module, "_COMPACT_FRACTION", None)
        return fn()


class _Letters:
    """Toy tokenizer for stop strings: token i is the letter chr(97 + i % 26)."""

    def decode(self, ids, **kw):
        return "".join(chr(97 + int(i) % 26) for i in ids)


COMPACT_CASES = {
    "greedy": dict(),
    "sampling": dict(do_sample=True, top_k=0, seed=4),
    "penalties": dict(repetition_penalty=1.4, no_repeat_ngram_size=2, min_new_tokens=2),
    "sampling-penalties": dict(
        do_sample=True, top_k=20, seed=2, repetition_penalty=1.2, min_new_tokens=1
    ),
    "return-sequences": dict(do_sample=True, num_return_sequences=2, seed=9),
    "stop-strings": dict(stop_strings="x"),  # set per model below
}


@pytest.mark.parametrize("case", list(COMPACT_CASES))
def test_dropping_finished_rows_changes_no_token(pair, monkeypatch, case):
    model, _ = pair
    ids, mask = left_padded_prompts(8)
    kw = dict(max_new_tokens=16, pad_token_id=PAD, **COMPACT_CASES[case])
    if case == "stop-strings":
        early = _early_tokens(model, ids, mask)
        # An EOS id is what fills finished rows with pads; without one they keep their tokens
        # (as in transformers) and every row is computed to the end.
        kw.update(eos_token_id=99, stop_strings=_Letters().decode(early[:1]), tokenizer=_Letters())
    else:
        kw["eos_token_id"] = _early_tokens(model, ids, mask)
    with _BatchSizes(model) as seen:
        ours = generate(model, ids, mask, **kw)
    n = ids.shape[0] * kw.get("num_return_sequences", 1)
    assert min(seen.sizes) < n, "no row was dropped: the case does not test compaction"
    plain = _plain(monkeypatch, lambda: generate(model, ids, mask, **kw))
    assert torch.equal(ours, plain)
    if not kw.get("do_sample"):  # greedy: also each prompt alone
        T = ids.shape[1]
        for r in range(ids.shape[0]):
            alone = generate(model, ids[r : r + 1, mask[r].bool()], **kw)
            new = alone[0, int(mask[r].sum()) :]
            assert torch.equal(ours[r, T : T + new.shape[0]], new)
            assert (ours[r, T + new.shape[0] :] == PAD).all()


def test_dropping_rows_matches_transformers_sampling(pair):
    """Same global seed, same draws: the compacted loop still equals `transformers`."""
    model, hf = pair
    ids, mask = left_padded_prompts(6)
    kw = dict(
        max_new_tokens=12,
        eos_token_id=_early_tokens(model, ids, mask),
        pad_token_id=PAD,
        do_sample=True,
        top_k=0,
        repetition_penalty=1.2,
    )
    torch.manual_seed(11)
    with _BatchSizes(model) as seen:
        ours = generate(model, ids, mask, **kw)
    assert min(seen.sizes) < 6
    torch.manual_seed(11)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask, **kw)
    assert torch.equal(ours, ref)


def test_dropping_rows_with_encoder_states_and_slide(tmp_path, monkeypatch):
    cfg = tiny_config(add_cross_attention=True, initializer_range=0.3, n_positions=N_POS)
    torch.manual_seed(2)
    model = GPT2LMHeadModel(cfg).eval()
    enc = torch.randn(6, 5, cfg.n_embd)
    ids, mask = left_padded_prompts(6)
    probe = generate(
        model,
        ids,
        mask,
        encoder_hidden_states=enc,
        max_new_tokens=4,
        eos_token_id=None,
        pad_token_id=PAD,
    )
    eos = sorted({int(t) for t in probe[:3, ids.shape[1] + 2]})
    kw = dict(
        encoder_hidden_states=enc,
        max_new_tokens=30,
        eos_token_id=eos,
        pad_token_id=PAD,
        context_overflow="slide",
    )
    with _BatchSizes(model) as seen:
        ours = generate(model, ids, mask, **kw)
    assert min(seen.sizes) < 6
    assert torch.equal(ours, _plain(monkeypatch, lambda: generate(model, ids, mask, **kw)))


def test_user_processor_and_recording_keep_every_row(pair):
    model, _ = pair
    ids, mask = left_padded_prompts(4)
    kw = dict(max_new_tokens=10, eos_token_id=_early_tokens(model, ids, mask), pad_token_id=PAD)
    with _BatchSizes(model) as seen:
        a = generate(model, ids, mask, logits_processor=[lambda i, s: s], **kw)
        b = generate(model, ids, mask, return_dict_in_generate=True, output_scores=True, **kw)
    assert min(seen.sizes) == 4
    assert torch.equal(a, b.sequences) and (a[:, -1] == PAD).any()  # rows did finish early
    assert all(s.shape[0] == 4 for s in b.scores)


# -- reading liveness back after queueing the next step (asynchronous devices) -------------------
OVERLAP_CASES = {
    "greedy-batch": dict(batch=4),
    "sampling-batch": dict(batch=4, do_sample=True, top_k=0, seed=3),
    "greedy-one-row": dict(batch=1),
    "static-cache": dict(batch=4, cache_implementation="static", disable_compile=True),
    "slide": dict(batch=2, context_overflow="slide", slide_stride=8, max_new_tokens=80),
}


@pytest.mark.parametrize("case", list(OVERLAP_CASES))
def test_overlapped_liveness_check_changes_no_token(pair, monkeypatch, case):
    """The CUDA loop's late read of "any row live?" (`_LiveFlag`), run here on the CPU.

    Rows stop at EOS ids they produce early, so the loop ends before `max_new_tokens` and
    queues one step it then discards: the ids equal the synchronous loop's.
    """
    model, _ = pair
    kw = dict(OVERLAP_CASES[case])
    ids, mask = left_padded_prompts(kw.pop("batch"))
    kw = {"max_new_tokens": 16, "pad_token_id": PAD, **kw}
    if "slide" not in case:  # every row's third greedy token is an EOS id: all rows stop
        third = generate(model, ids, mask, max_new_tokens=3, eos_token_id=None, pad_token_id=PAD)
        kw["eos_token_id"] = sorted({int(t) for t in third[:, -1]})
    else:
        kw["eos_token_id"] = _early_tokens(model, ids, mask)
    monkeypatch.setattr(search_module, "_COMPACT_FRACTION", None)
    plain = generate(model, ids, mask, **kw)
    with monkeypatch.context() as m:
        m.setattr(search_module, "_OVERLAP_DEVICES", ("cpu",))
        with _BatchSizes(model) as seen:
            overlapped = generate(model, ids, mask, **kw)
    assert torch.equal(overlapped, plain)
    if "slide" not in case:
        assert plain.shape[1] < ids.shape[1] + kw["max_new_tokens"], (
            "no early stop: case tests nothing"
        )
    if case not in ("slide", "static-cache"):  # (the static steps bypass the model's forward)
        # prefill + one step per new token but the first + the discarded one
        assert len(seen.sizes) == plain.shape[1] - ids.shape[1] + 1
