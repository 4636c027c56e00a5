"""Metrics against known values: scikit-learn / scipy numbers, conlleval chunk examples,
official SQuAD normalization cases, rouge-score and sacrebleu outputs (computed once with
those libraries and written down here, so the tests need none of them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gpt2kit.evaluation import (
    bleu,
    compute_metrics,
    entity_f1,
    format_table,
    get_entities,
    matthews_corrcoef,
    normalize_answer,
    pearson,
    perplexity,
    precision_recall_f1,
    rouge,
    spearman,
    squad_metrics,
)
from gpt2kit.evaluation.generation_metrics import tokenize_13a
from gpt2kit.evaluation.metrics import multilabel_metrics, rankdata, token_cross_entropy
from gpt2kit.evaluation.squad import f1_score

Y_TRUE = [0, 1, 2, 0, 1, 2, 0, 2]
Y_PRED = [0, 2, 1, 0, 0, 2, 0, 2]


@pytest.mark.parametrize(
    ("average", "expected"),
    [
        # sklearn.metrics.precision_recall_fscore_support(Y_TRUE, Y_PRED, average=...)
        ("macro", (0.4722222222, 0.5555555556, 0.5079365079)),
        ("micro", (0.625, 0.625, 0.625)),
        ("weighted", (0.53125, 0.625, 0.5714285714)),
    ],
)
def test_precision_recall_f1_match_sklearn(average, expected):
    r = precision_recall_f1(Y_PRED, Y_TRUE, average=average)
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx(expected, abs=1e-9)


def test_per_class_binary_and_zero_division():
    r = precision_recall_f1(Y_PRED, Y_TRUE, average=None)
    assert r["f1"] == pytest.approx([0.8571428571, 0.0, 0.6666666667]) and r["support"] == [3, 2, 3]
    assert precision_recall_f1([0, 0], [1, 0], average="binary")["precision"] == 0.0


def test_mcc_and_correlations_match_sklearn_scipy():
    assert matthews_corrcoef(Y_PRED, Y_TRUE) == pytest.approx(0.4255322482)  # sklearn
    assert matthews_corrcoef([1, 1, 1], [1, 1, 1]) == 0.0
    x, y = [1.0, 2.0, 2.0, 3.0, 5.0], [2.0, 1.0, 4.0, 4.0, 6.0]
    assert pearson(x, y) == pytest.approx(0.8287248621)  # scipy.stats.pearsonr
    assert spearman(x, y) == pytest.approx(0.7631578947)  # scipy.stats.spearmanr (ties)
    assert rankdata([3, 1, 3, 2, 3]).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]
    assert math.isnan(pearson([1, 1], [2, 3]))


def test_perplexity_and_token_cross_entropy():
    assert perplexity(0.0) == 1.0 and perplexity(1e6) == float("inf")
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]])
    labels = torch.tensor([[0, 2, -100]])
    total, n = token_cross_entropy(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits[0, :1], labels[0, 1:2])
    assert n == 1 and total == pytest.approx(float(expected))


def test_multilabel():
    m = multilabel_metrics([[1.0, -1.0, 2.0], [-1.0, -1.0, 1.0]], [[1, 0, 1], [0, 1, 1]])
    assert m["subset_accuracy"] == 0.5
    assert m["f1_micro"] == pytest.approx(2 * 3 / (3 + 4))  # tp=3, predicted 3, gold 4
    assert m["f1_macro"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)


# -- conlleval -------------------------------------------------------------------------------


def test_chunks_follow_conlleval_rules():
    # IOB1: I after O starts a chunk; B separates adjacent same-type chunks.
    assert get_entities(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == [
        ("PER", 0, 1),
        ("PER", 2, 2),
        ("LOC", 4, 4),
    ]
    # Ill-formed IOB2: a stray I-X starts a chunk; a type change ends one.
    assert get_entities(["O", "I-ORG", "B-PER", "I-LOC"]) == [
        ("ORG", 1, 1),
        ("PER", 2, 2),
        ("LOC", 3, 3),
    ]
    # BIOES.
    assert get_entities(["B-PER", "I-PER", "E-PER", "S-LOC", "S-LOC"]) == [
        ("PER", 0, 2),
        ("LOC", 3, 3),
        ("LOC", 4, 4),
    ]


def test_entity_f1_known_example():
    # The seqeval README example (its numbers: precision 0.50, recall 0.50, f1 0.50;
    # MISC f1 0.00, PER f1 1.00).
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    r = entity_f1(pred, gold)
    assert (r["precision"], r["recall"], r["f1"]) == (0.5, 0.5, 0.5)
    assert r["per_type"]["MISC"]["f1"] == 0.0 and r["per_type"]["PER"]["f1"] == 1.0
    assert r["accuracy"] == pytest.approx(8 / 10)
    with pytest.raises(ValueError, match="one tag per word"):
        entity_f1([["O"]], [["O", "O"]])


# -- SQuAD -----------------------------------------------------------------------------------


def test_official_normalization():
    assert normalize_answer("The Norman  Conquest!") == "norman conquest"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theory") == "theory"  # articles only as whole words
    assert f1_score("", "", "2.0") == 1.0 and f1_score("", "", "1.1") == 0.0
    assert f1_score("the cat sat", "a cat") == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_squad_v1_and_v2():
    preds = {"1": "Denver Broncos", "2": "in 1066", "3": "", "4": "something"}
    refs = {"1": ["Denver Broncos", "the Broncos"], "2": ["1066"], "3": [], "4": []}
    v2 = squad_metrics(preds, refs)
    assert v2["HasAns_exact"] == 50.0 and v2["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert v2["NoAns_exact"] == 50.0 and v2["total"] == 4
    assert v2["exact"] == 50.0
    v1 = squad_metrics({"1": "Broncos", "2": "1066"}, {"1": ["Denver Broncos"], "2": ["1066"]})
    assert v1 == {"exact_match": 50.0, "f1": pytest.approx(100 * (2 / 3 + 1) / 2), "total": 2}
    # A missing question scores 0 and counts, as the official v1.1 script ("will receive
    # score 0"); in v2.0 even for an unanswerable question (no prediction is not "no answer").
    assert squad_metrics({"1": "1066"}, {"1": ["1066"], "x": ["Paris"]}) == {
        "exact_match": 50.0, "f1": 50.0, "total": 2
    }  # fmt: skip
    v2 = squad_metrics({"1": "1066"}, {"1": ["1066"], "x": []})
    assert v2["exact"] == 50.0 and v2["NoAns_exact"] == 0.0 and v2["NoAns_f1"] == 0.0


def test_squad_no_answer_threshold():
    preds = {"a": "Paris", "b": "London"}
    refs = {"a": ["Paris"], "b": []}
    r = squad_metrics(preds, refs, na_probs={"a": 0.1, "b": 0.9}, na_prob_thresh=0.5)
    assert r["exact"] == 100.0  # "b" abstains above the threshold
    assert r["best_exact"] == 100.0 and r["best_exact_thresh"] == 0.1


# -- ROUGE and BLEU (values from rouge-score 0.1.2 and sacrebleu 2.6.0) ----------------------


def test_rouge_matches_rouge_score():
    pred = "The cat was found under the bed.\nIt slept."
    ref = "The cat was under the bed.\nThe cat slept there."
    r = rouge([pred], [ref])
    assert r["rouge1"] == pytest.approx(0.7368421053, abs=1e-9)
    assert r["rouge2"] == pytest.approx(0.4705882353, abs=1e-9)
    assert r["rougeL"] == pytest.approx(0.7368421053, abs=1e-9)
    assert r["rougeLsum"] == pytest.approx(0.7368421053, abs=1e-9)
    assert rouge(["a b"], [["c d", "a b"]])["rouge1"] == 1.0  # best of several references


def test_bleu_matches_sacrebleu():
    hyps = ["The cat sat on the mat.", "It costs $3.50, he said."]
    refs = [
        ["The cat is on the mat.", "There is a cat on the mat."],
        ["He said it costs $3.50.", "The price is $3.50."],
    ]
    r = bleu(hyps, refs)
    assert r["bleu"] == pytest.approx(31.823566222, abs=1e-8)
    assert (r["sys_len"], r["ref_len"]) == (15, 14)
    assert r["precisions"] == pytest.approx(
        [73.3333333333, 46.1538461538, 27.2727272727, 11.1111111111]
    )
    assert tokenize_13a("Hello, world. It's $3.50!") == [
        "Hello",
        ",",
        "world",
        ".",
        "It's",
        "$",
        "3.50",
        "!",
    ]
    assert bleu(["x"], ["a b c d e"])["bleu"] == 0.0


# -- compute_metrics / format_table ------------------------------------------------------------


def test_compute_metrics_dispatch():
    logits = np.array([[2.0, 0.1], [0.2, 1.0], [3.0, 0.0]])
    m = compute_metrics("text-classification")(logits, np.array([0, 1, 1]))
    assert m["accuracy"] == pytest.approx(2 / 3) and "mcc" in m and "f1_macro" in m
    reg = compute_metrics("sequence-classification")(
        np.array([[0.5], [1.5], [2.0]]), np.array([0.4, 1.2, 2.5])
    )
    assert reg["spearman"] == 1.0

    class EvalPrediction:  # what the Trainer passes: one object
        predictions = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        label_ids = torch.tensor([1, 1])

    assert compute_metrics("multiple-choice")(EvalPrediction()) == {"accuracy": 0.5}
    lm = compute_metrics("causal-lm")(2.0)
    assert lm["perplexity"] == pytest.approx(math.exp(2.0))
    gen = compute_metrics("seq2seq")(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert gen["rouge1"] == 1.0 and gen["bleu"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="unknown task"):
        compute_metrics("nope")


def test_format_table():
    text = format_table(
        {"accuracy": 0.75, "per_type": {"PER": {"f1": 1.0, "support": 3}}}, title="eval"
    )
    lines = text.splitlines()
    assert lines[0] == "eval" and lines[3].startswith("accuracy") and lines[3].endswith("0.7500")
    assert "per_type/PER/support" in text and len({len(line) for line in lines[1:]}) == 1
