"""Each logits processor equals its `transformers` counterpart on random logits."""

from __future__ import annotations

import pytest
import torch
from transformers.generation import logits_process as hf

from gpt2kit.generation import (
    GenerationConfig,
    MinNewTokensLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    build_processors,
)

V = 40


def _inputs(seed: int, N: int = 4, L: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 8, (N, L), generator=g)  # small id range: repeats and n-grams occur
    scores = torch.randn(N, V, generator=g) * 3
    return ids, scores


PAIRS = [
    (lambda: TemperatureLogitsWarper(0.7), lambda: hf.TemperatureLogitsWarper(0.7)),
    (lambda: TopKLogitsWarper(5), lambda: hf.TopKLogitsWarper(5)),
    (
        lambda: TopKLogitsWarper(3, min_tokens_to_keep=4),
        lambda: hf.TopKLogitsWarper(3, min_tokens_to_keep=4),
    ),
    (lambda: TopPLogitsWarper(0.8), lambda: hf.TopPLogitsWarper(0.8)),
    (
        lambda: TopPLogitsWarper(0.1, min_tokens_to_keep=3),
        lambda: hf.TopPLogitsWarper(0.1, min_tokens_to_keep=3),
    ),
    (lambda: MinPLogitsWarper(0.2), lambda: hf.MinPLogitsWarper(0.2)),
    (
        lambda: MinPLogitsWarper(0.9, min_tokens_to_keep=2),
        lambda: hf.MinPLogitsWarper(0.9, min_tokens_to_keep=2),
    ),
    (lambda: TypicalLogitsWarper(0.9), lambda: hf.TypicalLogitsWarper(0.9)),
    (
        lambda: TypicalLogitsWarper(0.3, min_tokens_to_keep=2),
        lambda: hf.TypicalLogitsWarper(0.3, min_tokens_to_keep=2),
    ),
    (
        lambda: RepetitionPenaltyLogitsProcessor(1.5),
        lambda: hf.RepetitionPenaltyLogitsProcessor(1.5),
    ),
    (
        lambda: RepetitionPenaltyLogitsProcessor(0.6),
        lambda: hf.RepetitionPenaltyLogitsProcessor(0.6),
    ),
    (
        lambda: RepetitionPenaltyLogitsProcessor(1.5, torch.tensor([0, 3, 5, 11])),
        lambda: hf.RepetitionPenaltyLogitsProcessor(
            1.5, prompt_ignore_length=torch.tensor([0, 3, 5, 11])
        ),
    ),
    (lambda: NoRepeatNGramLogitsProcessor(2), lambda: hf.NoRepeatNGramLogitsProcessor(2)),
    (lambda: NoRepeatNGramLogitsProcessor(3), lambda: hf.NoRepeatNGramLogitsProcessor(3)),
    (
        lambda: NoBadWordsLogitsProcessor([[3], [1, 2], [4, 5, 6], [7, 2], [9]], eos_token_id=9),
        lambda: hf.NoBadWordsLogitsProcessor([[3], [1, 2], [4, 5, 6], [7, 2], [9]], eos_token_id=9),
    ),
    (
        lambda: MinNewTokensLogitsProcessor(8, 5, [1, 2]),
        lambda: hf.MinNewTokensLengthLogitsProcessor(8, 5, [1, 2]),
    ),
    (
        lambda: MinNewTokensLogitsProcessor(8, 4, [1, 2]),
        lambda: hf.MinNewTokensLengthLogitsProcessor(8, 4, [1, 2]),
    ),
]


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=lambda f: "")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_processor_matches_transformers(ours, theirs, seed):
    ids, scores = _inputs(seed)
    a = ours()(ids, scores.clone())
    b = theirs()(ids, scores.clone())
    assert torch.equal(a.isinf(), b.isinf())
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cases_are_not_vacuous():
    ids, scores = _inputs(0)
    for make, _ in PAIRS[:-1]:  # the last min-new-tokens case is past its minimum on purpose
        assert not torch.equal(make()(ids, scores.clone()), scores), make()


def test_top_k_uses_topk_not_sort(monkeypatch):
    ids, scores = _inputs(0)

    def no_sort(*a, **k):
        raise AssertionError("top-k must not sort the vocabulary")

    monkeypatch.setattr(torch, "sort", no_sort)
    assert (TopKLogitsWarper(3)(ids, scores).isfinite().sum(-1) == 3).all()


def test_build_processors_follows_transformers_order():
    cfg = GenerationConfig(
        do_sample=True,
        temperature=0.5,
        top_k=10,
        top_p=0.9,
        min_p=0.05,
        typical_p=0.95,
        repetition_penalty=1.2,
        no_repeat_ngram_size=2,
        bad_words_ids=[[1]],
        min_new_tokens=2,
    )
    names = [type(p).__name__ for p in build_processors(cfg, prompt_length=3, eos_token_ids=[0])]
    assert names == [
        "RepetitionPenaltyLogitsProcessor",
        "NoRepeatNGramLogitsProcessor",
        "NoBadWordsLogitsProcessor",
        "MinNewTokensLogitsProcessor",
        "TemperatureLogitsWarper",
        "TopKLogitsWarper",
        "TopPLogitsWarper",
        "MinPLogitsWarper",
        "TypicalLogitsWarper",
    ]
    greedy = build_processors(GenerationConfig(top_k=10), prompt_length=3, eos_token_ids=[0])
    assert greedy == []  # warpers only apply when sampling


@pytest.mark.parametrize(
    "make, word",
    [
        (lambda: TemperatureLogitsWarper(0.0), "temperature"),
        (lambda: TopKLogitsWarper(0), "top_k"),
        (lambda: TopPLogitsWarper(1.2), "top_p"),
        (lambda: TypicalLogitsWarper(0.0), "typical_p"),
        (lambda: MinPLogitsWarper(-0.1), "min_p"),
        (lambda: RepetitionPenaltyLogitsProcessor(0.0), "repetition_penalty"),
        (lambda: NoRepeatNGramLogitsProcessor(0), "no_repeat_ngram_size"),
        (lambda: NoBadWordsLogitsProcessor([[]]), "bad_words_ids"),
    ],
)
def test_bad_arguments(make, word):
    with pytest.raises(ValueError, match=word):
        make()
