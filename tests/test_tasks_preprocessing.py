"""Pre/post-processing for the task heads: word-label alignment, QA windows and decoding,
the multiple-choice collator. Uses the real GPT-2 tokenizer (shipped, offline)."""

from __future__ import annotations

import pytest
import torch

from gpt2kit.tasks.multiple_choice import MultipleChoiceCollator
from gpt2kit.tasks.qa import QAFeature, collate_qa_features, decode_spans, prepare_qa_features
from gpt2kit.tasks.token_alignment import (
    align_labels_with_tokens,
    tokenize_and_align_labels,
    word_predictions,
)
from gpt2kit.tokenizer import GPT2Tokenizer


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_pretrained("gpt2")


# -- token alignment ---------------------------------------------------------------------------
def test_align_first_last_all():
    word_ids = [0, 1, 1, 1, 2, None, None]
    assert align_labels_with_tokens(word_ids, [5, 1, 0]) == [5, 1, -100, -100, 0, -100, -100]
    assert align_labels_with_tokens(word_ids, [5, 1, 0], "last") == [
        5,
        -100,
        -100,
        1,
        0,
        -100,
        -100,
    ]
    assert align_labels_with_tokens(word_ids, [5, 1, 0], "all", b_to_i={1: 2}) == [
        5,
        1,
        2,
        2,
        0,
        -100,
        -100,
    ]
    with pytest.raises(ValueError, match="one label per word"):
        align_labels_with_tokens(word_ids, [5, 1])
    with pytest.raises(ValueError, match="label_pieces"):
        align_labels_with_tokens(word_ids, [5, 1, 0], "middle")


def test_tokenize_align_and_map_back_round_trip(tok):
    words = [["Angela", "Merkel", "visited", "Washington-DC", "."], ["Hi", "there"]]
    labels = [[1, 2, 0, 3, 0], [0, 0]]
    enc = tokenize_and_align_labels(tok, words, labels)
    assert enc["labels"].shape == enc["input_ids"].shape
    assert enc["attention_mask"][1].sum() == 2  # right-padded second sentence
    for i in range(2):
        word_ids = enc.word_ids(i)
        # logits that put all mass on each token's (first-piece) label: round trip exactly
        lab = enc["labels"][i]
        fake = torch.full((len(word_ids), 4), -5.0)
        for t, w in enumerate(word_ids):
            if w is not None:
                fake[t, labels[i][w]] = 5.0
        for strategy in ("first", "last", "average", "max"):
            assert word_predictions(word_ids, fake, strategy) == labels[i]
        firsts = [
            t for t, w in enumerate(word_ids) if w is not None and (t == 0 or word_ids[t - 1] != w)
        ]
        assert [int(lab[t]) for t in firsts] == labels[i]
        assert int((lab != -100).sum()) == len(labels[i])


def test_word_predictions_strategies_differ_where_pieces_disagree():
    word_ids = [0, 0, 0]
    logits = torch.tensor([[1.0, 0.0], [0.0, 0.5], [0.0, 4.0]])
    assert word_predictions(word_ids, logits, "first") == [0]
    assert word_predictions(word_ids, logits, "average") == [1]
    assert word_predictions(word_ids, logits, "max") == [1]
    with pytest.raises(ValueError, match="tokens=3"):
        word_predictions(word_ids, logits[:2])


def test_align_label_count_mismatch_is_an_error(tok):
    with pytest.raises(ValueError, match="one per word"):
        tokenize_and_align_labels(tok, [["a", "b"]], [[0]])


# -- QA ----------------------------------------------------------------------------------------
CONTEXT = "The quick brown fox jumps over the lazy dog near the river bank in the morning."


def test_qa_question_first_and_answer_positions(tok):
    ans = {"text": ["lazy dog"], "answer_start": [CONTEXT.index("lazy dog")]}
    (f,) = prepare_qa_features(
        tok, ["What did the fox jump over?"], [CONTEXT], [ans], max_length=64, stride=8
    )
    q_ids = tok("What did the fox jump over?")["input_ids"]
    assert f.input_ids[: len(q_ids)] == q_ids and f.input_ids[len(q_ids)] == tok.eos_token_id
    assert f.null_index == len(q_ids)
    a, b = f.offsets[f.start_position][0], f.offsets[f.end_position][1]
    assert CONTEXT[a:b] == "lazy dog"


def test_qa_windows_overlap_and_map_offsets(tok):
    ans = {"text": "river bank", "answer_start": CONTEXT.index("river bank")}
    feats = prepare_qa_features(tok, ["Where?"], [CONTEXT], [ans], max_length=10, stride=3)
    assert len(feats) > 2 and all(len(f.input_ids) <= 10 for f in feats)
    ctx_ids = tok(CONTEXT)["input_ids"]
    room = 10 - len(tok("Where?")["input_ids"]) - 1
    # consecutive windows share `stride` tokens; together they cover the context
    for f, g in zip(feats, feats[1:]):
        shared = f.input_ids[-3:]
        assert g.input_ids[f.null_index + 1 : f.null_index + 4] == shared
    assert (
        feats[-1].input_ids[-1] == ctx_ids[-1]
        and len(feats[0].input_ids) == feats[0].null_index + 1 + room
    )
    # offsets point into the original context
    for f in feats:
        for t in f.context_token_indices:
            a, b = f.offsets[t]
            assert tok.decode([f.input_ids[t]]).strip() == CONTEXT[a:b].strip()
    with_answer = [f for f in feats if f.start_position != f.null_index]
    without = [f for f in feats if f.start_position == f.null_index]
    assert with_answer and without and all(f.end_position == f.null_index for f in without)
    for f in with_answer:
        assert (
            CONTEXT[f.offsets[f.start_position][0] : f.offsets[f.end_position][1]] == "river bank"
        )


def test_qa_decode_picks_best_span_across_windows_and_no_answer(tok):
    feats = prepare_qa_features(tok, ["Where?"], [CONTEXT], None, max_length=10, stride=3)
    T = max(len(f.input_ids) for f in feats)
    s, e = torch.zeros(len(feats), T), torch.zeros(len(feats), T)
    target = CONTEXT.index("river bank"), CONTEXT.index("river bank") + len("river bank")
    for r, f in enumerate(feats):
        for t in f.context_token_indices:
            if f.offsets[t][0] == target[0]:
                s[r, t] = 6.0
            if f.offsets[t][1] == target[1]:
                e[r, t] = 6.0
        s[r, f.null_index] = e[r, f.null_index] = 2.0
    s[:, -1] += 0  # pad/question positions are never candidates even when large:
    s[0, 0] = e[0, 0] = 100.0  # a question token
    (p,) = decode_spans(feats, s, e, [CONTEXT], n_best=5, max_answer_length=5)
    assert (p.text, p.start_char, p.end_char, p.score) == ("river bank", *target, 12.0)
    assert p.null_score == 4.0 and len(p.n_best) <= 5
    assert len({(c["start_char"], c["end_char"]) for c in p.n_best}) == len(p.n_best)
    # max_answer_length too short for a 2-token answer: it is not proposed
    (short,) = decode_spans(feats, s, e, [CONTEXT], max_answer_length=1)
    assert short.text != "river bank"
    # SQuAD v2: the null score wins when above the best span (+ threshold)
    for r, f in enumerate(feats):
        s[r, f.null_index] = e[r, f.null_index] = 7.0
    (null,) = decode_spans(feats, s, e, [CONTEXT], allow_no_answer=True)
    assert null.is_impossible and null.text == ""
    (kept,) = decode_spans(feats, s, e, [CONTEXT], allow_no_answer=True, null_threshold=5.0)
    assert kept.text == "river bank"


def test_qa_unanswerable_and_bad_answers(tok):
    (f,) = prepare_qa_features(tok, ["Q?"], [CONTEXT], [{"text": [], "answer_start": []}])
    assert f.start_position == f.end_position == f.null_index
    with pytest.raises(ValueError, match="outside its context"):
        prepare_qa_features(
            tok, ["Q?"], [CONTEXT], [{"text": "dog", "answer_start": len(CONTEXT) - 1}]
        )
    with pytest.raises(ValueError, match="does not match"):
        prepare_qa_features(tok, ["Q?"], [CONTEXT], [{"text": "cat", "answer_start": 0}])
    with pytest.raises(ValueError, match="raise max_length"):
        prepare_qa_features(tok, ["a long question " * 5], [CONTEXT], max_length=20, stride=8)


def test_qa_collate():
    f = QAFeature(0, [5, 6, 7], [None, None, (0, 2)], 1, 2, 2)
    g = QAFeature(0, [5, 6], [None, None], 1, 1, 1)
    batch = collate_qa_features([f, g], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 6, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["start_positions"].tolist() == [2, 1]


# -- multiple choice collator -------------------------------------------------------------------
def test_mc_collator_text(tok):
    collate = MultipleChoiceCollator(tok)
    ex = [
        {
            "context": "The capital of France is",
            "choices": ["Paris", "Berlin", "a big city"],
            "label": 0,
        },
        {"context": "Two plus two is", "choices": ["four", "five", "seven"], "label": 2},
    ]
    batch = collate(ex)
    B, C, T = batch["input_ids"].shape
    assert (
        (B, C) == (2, 3)
        and batch["attention_mask"].shape == (B, C, T)
        and batch["labels"].tolist() == [0, 2]
    )
    row = batch["input_ids"][0, 2][batch["attention_mask"][0, 2].bool()].tolist()
    assert tok.decode(row) == "The capital of France is a big city"
    last = batch["mc_token_ids"]
    assert (batch["attention_mask"].gather(-1, last[..., None]) == 1).all()
    assert (last + 1 == batch["attention_mask"].sum(-1)).all()  # right padding


def test_mc_collator_ids_left_padding_and_truncation():
    collate = MultipleChoiceCollator(pad_token_id=0, max_length=4, padding_side="left")
    batch = collate([{"context_ids": [1, 2, 3, 4], "choice_ids": [[5], [6, 7]]}])
    assert batch["input_ids"].tolist() == [[[2, 3, 4, 5], [3, 4, 6, 7]]]  # context start dropped
    assert batch["mc_token_ids"].tolist() == [[3, 3]] and "labels" not in batch
    batch = MultipleChoiceCollator(pad_token_id=9, padding_side="left")(
        [{"input_ids": [[1], [2, 3]]}]
    )
    assert batch["input_ids"].tolist() == [[[9, 1], [2, 3]]]


def test_mc_collator_errors(tok):
    collate = MultipleChoiceCollator(pad_token_id=0)
    with pytest.raises(ValueError, match="same number of choices"):
        collate([{"choice_ids": [[1], [2]]}, {"choice_ids": [[1], [2], [3]]}])
    with pytest.raises(ValueError, match="tokenizer"):
        collate([{"context": "a", "choices": ["b"]}])
    with pytest.raises(ValueError, match="choice indices"):
        collate([{"choice_ids": [[1], [2]], "label": 2}])
    with pytest.raises(ValueError, match="none of"):
        collate([{"text": "x"}])


def test_mc_model_rejects_2d_input():
    from gpt2kit.models.multiple_choice import GPT2ForMultipleChoice
    from harness import tiny_config

    model = GPT2ForMultipleChoice(tiny_config())
    with pytest.raises(ValueError, match=r"\[batch, choices, tokens\]"):
        model(torch.tensor([[1, 2, 3]]))
