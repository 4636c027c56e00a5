"""Collators and `load_task_data`: batch keys are forward argument names, pads are masked,
labels are -100 where nothing is scored; one end-to-end forward per task on tiny models."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from gpt2kit.data import (
    DataCollatorWithPadding,
    DocumentCollator,
    PackedTextCollator,
    TokenClassificationCollator,
    load_task_data,
)
from gpt2kit.data.readers import DataError
from gpt2kit.evaluation import compute_metrics
from gpt2kit.tokenizer import GPT2Tokenizer


@pytest.fixture(scope="module")
def tok() -> GPT2Tokenizer:
    return GPT2Tokenizer.from_pretrained("gpt2")


def test_dynamic_padding_both_sides():
    feats = [{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [8], "label": 0}]
    right = DataCollatorWithPadding(pad_token_id=9)(feats)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 9, 9]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right["labels"].dtype == torch.long and right["labels"].tolist() == [1, 0]
    left = DataCollatorWithPadding(pad_token_id=9, padding_side="left", pad_to_multiple_of=4)(feats)
    assert left["input_ids"].tolist() == [[9, 5, 6, 7], [9, 9, 9, 8]]
    assert left["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]


def test_label_kinds_and_lm_labels():
    c = DataCollatorWithPadding()
    assert (
        c([{"input_ids": [1], "label": 0.5}, {"input_ids": [2], "label": 2}])["labels"].dtype
        == torch.float
    )
    multi = c([{"input_ids": [1], "label": [1.0, 0.0]}, {"input_ids": [2], "label": [0.0, 1.0]}])[
        "labels"
    ]
    assert multi.shape == (2, 2) and multi.dtype == torch.float
    lm = DataCollatorWithPadding(pad_token_id=0, lm_labels=True)(
        [{"input_ids": [4, 5]}, {"input_ids": [6]}]
    )
    assert lm["labels"].tolist() == [[4, 5], [6, -100]]
    seq = DataCollatorWithPadding(sequence_labels=True)(
        [{"input_ids": [4, 5], "labels": [1, 2]}, {"input_ids": [6], "labels": [3]}]
    )
    assert seq["labels"].tolist() == [[1, 2], [3, -100]]


def test_token_classification_first_piece(tok):
    words = ["Hello", "Washingtonians", "!"]
    batch = TokenClassificationCollator(tok)(
        [{"words": words, "labels": [0, 1, 0]}, {"words": ["Hi"], "labels": [2]}]
    )
    n = len(tok(words, is_split_into_words=True)["input_ids"])
    assert batch["input_ids"].shape == (2, n)
    first = batch["labels"][0].tolist()
    assert first[0] == 0 and first[1] == 1 and first[-1] == 0 and first.count(-100) == n - 3
    assert batch["labels"][1].tolist() == [2] + [-100] * (n - 1)
    assert batch["attention_mask"][1].tolist() == [1] + [0] * (n - 1)


def test_packed_and_document_collators():
    feats = [
        {"input_ids": [1, 2, 3], "label": 0},
        {"input_ids": [4, 5], "label": 1},
        {"input_ids": [6] * 6, "label": 1},
    ]
    b = PackedTextCollator(8, pad_token_id=0)(feats)
    assert b["attention_mask"].dim() == 4 and b["text_spans"].shape == (3, 3)
    assert b["labels"].tolist() == [0, 1, 1]
    d = DocumentCollator()(feats)
    assert d["documents"][2] == [6] * 6


def test_collators_pickle(tok):
    # DataLoader workers need picklable collators.
    for c in (DataCollatorWithPadding(), TokenClassificationCollator(tok), PackedTextCollator(8)):
        assert type(pickle.loads(pickle.dumps(c))) is type(c)


# -- load_task_data, end to end on tiny models -----------------------------------------------


def _tiny(cls, tiny_config, **kw):
    return cls(tiny_config(vocab_size=50257, n_positions=128, **kw)).eval()


def _batch(dataset, collator, n=2):
    return next(iter(DataLoader(dataset, batch_size=n, collate_fn=collator)))


def test_sequence_classification_end_to_end(tmp_path, tok, tiny_config):
    from gpt2kit.models.sequence_classification import GPT2ForSequenceClassification

    p = tmp_path / "train.csv"
    p.write_text("text,text_pair,label\nI loved it,yes,pos\nterrible,no,neg\nfine,ok,pos\n")
    ds, collate, info = load_task_data("sequence-classification", p, tok, max_length=8)
    assert (
        info["id2label"] == {0: "neg", 1: "pos"}
        and info["num_labels"] == 2
        and info["num_examples"] == 3
    )
    assert ds[0]["input_ids"] == tok.encode("I loved it") + [tok.eos_token_id] + tok.encode("yes")
    batch = _batch(ds, collate)
    model = _tiny(
        GPT2ForSequenceClassification, tiny_config, num_labels=2, pad_token_id=tok.eos_token_id
    )
    out = model(**batch)
    assert torch.isfinite(out.loss)
    metrics = compute_metrics("sequence-classification", **info["metrics"])(
        out.logits.detach(), batch["labels"]
    )
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_text_classification_packed_end_to_end(tok, tiny_config):
    from gpt2kit.models.text_classification import GPT2ForTextClassification

    rows = [{"text": t, "label": i % 2} for i, t in enumerate(["a b", "c d e", "f", "g h i j"])]
    ds, collate, _ = load_task_data("text-classification", rows, tok, max_length=16, pack_length=32)
    batch = _batch(ds, collate, 4)
    model = _tiny(
        GPT2ForTextClassification, tiny_config, num_labels=2, max_text_length=16, pack_length=32
    )
    out = model(**batch)
    assert out.logits.shape == (4, 2) and torch.isfinite(out.loss)


def test_token_classification_end_to_end(tmp_path, tok, tiny_config):
    from gpt2kit.models.token_classification import GPT2ForTokenClassification

    p = tmp_path / "ner.conll"
    p.write_text("EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn I-PER\n")
    ds, collate, info = load_task_data("token-classification", p, tok)
    assert info["id2label"] == {0: "O", 1: "B-ORG", 2: "B-PER", 3: "I-PER"}
    batch = _batch(ds, collate)
    model = _tiny(GPT2ForTokenClassification, tiny_config, num_labels=4)
    out = model(**batch)
    assert torch.isfinite(out.loss)
    metrics = compute_metrics("token-classification", **info["metrics"])(
        out.logits.detach(), batch["labels"]
    )
    assert {"token_accuracy", "entity_f1"} <= set(metrics)
    # Gold labels as predictions score perfectly.
    perfect = torch.nn.functional.one_hot(batch["labels"].clamp(min=0), 4).float()
    assert (
        compute_metrics("token-classification", **info["metrics"])(perfect, batch["labels"])[
            "entity_f1"
        ]
        == 1.0
    )


def test_question_answering_end_to_end(tmp_path, tok, tiny_config):
    from gpt2kit.models.question_answering import GPT2ForQuestionAnswering

    context = "The quick brown fox jumps over the lazy dog near the river bank today."
    data = {
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": "a",
                                "question": "What jumps?",
                                "answers": [{"text": "brown fox", "answer_start": 10}],
                            },
                            {"id": "b", "question": "Where?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ]
    }
    p = tmp_path / "dev.json"
    p.write_text(json.dumps(data))
    ds, collate, info = load_task_data("question-answering", p, tok, max_length=16, stride=4)
    assert info["num_features"] > info["num_examples"] == 2 and info["version_2_with_negative"]
    batch = collate([ds[i] for i in range(len(ds))])
    model = _tiny(GPT2ForQuestionAnswering, tiny_config)
    out = model(**batch)
    assert torch.isfinite(out.loss)
    # Logits that point at the gold positions decode to the gold answers.
    T = batch["input_ids"].shape[1]
    start = torch.full((len(ds), T), -10.0).scatter(1, batch["start_positions"][:, None], 10.0)
    end = torch.full((len(ds), T), -10.0).scatter(1, batch["end_positions"][:, None], 10.0)
    metrics = compute_metrics("question-answering", **info["metrics"])((start, end), None)
    assert metrics["exact"] == 1.0 and metrics["HasAns_total"] == 1 and metrics["NoAns_total"] == 1


def test_multiple_choice_end_to_end(tok, tiny_config):
    from gpt2kit.models.multiple_choice import GPT2ForMultipleChoice

    rows = [
        {
            "sent1": "He sat.",
            "sent2": "He",
            "ending0": "slept.",
            "ending1": "flew away.",
            "ending2": "ate.",
            "ending3": "sang.",
            "label": 1,
        }
    ] * 2
    ds, collate, info = load_task_data("multiple-choice", rows, tok)
    batch = _batch(ds, collate)
    assert batch["input_ids"].shape[:2] == (2, 4) and info["num_choices"] == 4
    out = _tiny(GPT2ForMultipleChoice, tiny_config)(**batch)
    assert out.logits.shape == (2, 4) and torch.isfinite(out.loss)


def test_seq2seq_and_conditional_generation(tok):
    rows = [{"source": "translate this", "target": "done"}, {"source": "x", "target": "y z"}]
    ds, collate, info = load_task_data("seq2seq", rows, tok)
    batch = collate([ds[0], ds[1]])
    src, tgt = tok.encode("translate this"), tok.encode("done")
    eos = tok.eos_token_id
    assert batch["input_ids"][0].tolist() == [*src, eos, *tgt, eos]
    assert batch["labels"][0].tolist() == [-100] * (len(src) + 1) + [*tgt, eos]
    ds2, collate2, _ = load_task_data("conditional-generation", rows, tok)
    b2 = collate2([ds2[0], ds2[1]])
    n = len(tgt) + 1
    assert b2["input_ids"][0].tolist() == src and b2["labels"][0].tolist()[:n] == [*tgt, eos]
    assert b2["decoder_input_ids"][0].tolist()[:n] == [tok.bos_token_id, *tgt]  # shifted
    assert info["references"] == ["done", "y z"]


def test_causal_lm_blocks(tmp_path, tok, tiny_config):
    from gpt2kit.models.lm import GPT2LMHeadModel

    p = tmp_path / "corpus.txt"
    p.write_text("To be, or not to be, that is the question.\n" * 40)
    train, collate, info = load_task_data("causal-lm", p, tok, block_size=32, progress=False)
    val, _, _ = load_task_data(
        "causal-lm", p, tok, block_size=32, split="validation", progress=False
    )
    assert info["num_tokens"] == len(tok.encode(p.read_text()))
    assert len(train) > len(val) > 0
    batch = _batch(train, collate)
    assert batch["input_ids"].shape == (2, 32) and torch.equal(batch["labels"], batch["input_ids"])
    out = _tiny(GPT2LMHeadModel, tiny_config)(**batch)
    assert torch.isfinite(out.loss)


def test_unknown_task_and_option(tok):
    with pytest.raises(ValueError, match="unknown task"):
        load_task_data("summarize", [], tok)
    with pytest.raises(TypeError, match="does not use: \\['bogus'\\]"):
        load_task_data("seq2seq", [{"source": "a", "target": "b"}], tok, bogus=1)
    with pytest.raises(DataError, match="the file is empty"):
        load_task_data("sequence-classification", Path("/dev/null"), tok, format="csv")
