"""Faithful Python ports of the official scorers, line for line, to check gpt2kit's numbers.

- `conlleval`: the CoNLL-2000/2003 shared tasks' `conlleval` Perl script (version 2004-01-26,
  Erik Tjong Kim Sang; https://www.clips.uantwerpen.be/conll2000/chunking/conlleval.txt):
  reads `... gold pred` lines, blank lines (or a first field `-X-`) between sentences, and
  counts chunks with its `endOfChunk`/`startOfChunk` rules and its running `inCorrect`
  state, not with sets of spans as gpt2kit does, so agreement is a real check. Percentages,
  as the script prints them.
- `squad_v1_evaluate`: `evaluate-v1.1.py` of the SQuAD v1.1 release
  (https://rajpurkar.github.io/SQuAD-explorer/): its `normalize_answer`, token F1 and
  `evaluate(dataset, predictions)`, unanswered questions scoring 0.
- `squad_v2_evaluate`: the core of `evaluate-v2.0.py` (no-answer probabilities all 0, the
  script's default without `--na-prob-file`): `get_raw_scores`, `make_eval_dict`,
  `HasAns_*`/`NoAns_*`.

They read the files the tools read (the predictions gpt2kit writes, the datasets' own JSON),
so a test compares gpt2kit's printed metrics with what the official tool would print.
"""

from __future__ import annotations

import collections
import json
import re
import string
from pathlib import Path
from typing import Any

# -- conlleval ---------------------------------------------------------------------------------


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    chunk_end = False
    if prev_tag == "B" and tag == "B":
        chunk_end = True
    if prev_tag == "B" and tag == "O":
        chunk_end = True
    if prev_tag == "I" and tag == "B":
        chunk_end = True
    if prev_tag == "I" and tag == "O":
        chunk_end = True
    if prev_tag == "E" and tag == "E":
        chunk_end = True
    if prev_tag == "E" and tag == "I":
        chunk_end = True
    if prev_tag == "E" and tag == "O":
        chunk_end = True
    if prev_tag == "I" and tag == "O":
        chunk_end = True
    if prev_tag != "O" and prev_tag != "." and prev_type != type_:
        chunk_end = True
    if prev_tag == "]":
        chunk_end = True
    if prev_tag == "[":
        chunk_end = True
    return chunk_end


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    chunk_start = False
    if prev_tag == "B" and tag == "B":
        chunk_start = True
    if prev_tag == "I" and tag == "B":
        chunk_start = True
    if prev_tag == "O" and tag == "B":
        chunk_start = True
    if prev_tag == "O" and tag == "I":
        chunk_start = True
    if prev_tag == "E" and tag == "E":
        chunk_start = True
    if prev_tag == "E" and tag == "I":
        chunk_start = True
    if prev_tag == "O" and tag == "E":
        chunk_start = True
    if prev_tag == "O" and tag == "I":
        chunk_start = True
    if tag != "O" and tag != "." and prev_type != type_:
        chunk_start = True
    if tag == "[":
        chunk_start = True
    if tag == "]":
        chunk_start = True
    return chunk_start


def _split_tag(tag: str) -> tuple[str, str]:
    # perl: if ($tag =~ /^([^-]*)-(.*)$/) { ($1, $2) } else { ($tag, "") }
    m = re.match(r"^([^-]*)-(.*)$", tag)
    return (m.group(1), m.group(2)) if m else (tag, "")


def conlleval(lines: list[str], boundary: str = "-X-") -> dict[str, Any]:
    """conlleval's counts and scores for `... gold pred` lines (percentages, as it prints).

    Returns `{"accuracy", "precision", "recall", "FB1", "per_type": {type: {"precision",
    "recall", "FB1", "found_gold", "found_guessed", "correct"}}, "tokens", "phrases",
    "found_guessed", "correct"}`.
    """
    correct_chunk = found_correct = found_guessed = 0
    correct_tags = token_counter = 0
    correct_chunk_t: dict[str, int] = collections.Counter()
    found_correct_t: dict[str, int] = collections.Counter()
    found_guessed_t: dict[str, int] = collections.Counter()
    last_correct, last_correct_type = "O", ""
    last_guessed, last_guessed_type = "O", ""
    in_correct = False
    n_features = -1
    for raw in lines:
        line = raw.rstrip("\n")
        features = line.split()
        if n_features < 0 and features:
            n_features = len(features) - 1
        elif features and n_features != len(features) - 1:
            raise ValueError(f"unexpected number of features: {len(features)} ({n_features + 1})")
        if not features or features[0] == boundary:
            features = [boundary, "O", "O"]
        if len(features) < 2:
            raise ValueError(f"conlleval: unexpected number of features in line {line}")
        guessed, guessed_type = _split_tag(features.pop())
        correct, correct_type = _split_tag(features.pop())
        first_item = features.pop(0) if features else ""
        if first_item == boundary:
            guessed = "O"
        if in_correct:
            end_c = _end_of_chunk(last_correct, correct, last_correct_type, correct_type)
            end_g = _end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
            if end_c and end_g and last_guessed_type == last_correct_type:
                in_correct = False
                correct_chunk += 1
                correct_chunk_t[last_correct_type] += 1
            elif end_c != end_g or guessed_type != correct_type:
                in_correct = False
        start_c = _start_of_chunk(last_correct, correct, last_correct_type, correct_type)
        start_g = _start_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if start_c and start_g and guessed_type == correct_type:
            in_correct = True
        if start_c:
            found_correct += 1
            found_correct_t[correct_type] += 1
        if start_g:
            found_guessed += 1
            found_guessed_t[guessed_type] += 1
        if first_item != boundary:
            if correct == guessed and guessed_type == correct_type:
                correct_tags += 1
            token_counter += 1
        last_guessed, last_correct = guessed, correct
        last_guessed_type, last_correct_type = guessed_type, correct_type
    if in_correct:
        correct_chunk += 1
        correct_chunk_t[last_correct_type] += 1

    def scores(c: int, g: int, f: int) -> tuple[float, float, float]:
        precision = 100 * c / g if g > 0 else 0.0
        recall = 100 * c / f if f > 0 else 0.0
        fb1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return precision, recall, fb1

    p, r, f = scores(correct_chunk, found_guessed, found_correct)
    per_type = {}
    for t in sorted(set(found_correct_t) | set(found_guessed_t)):
        tp, tr, tf = scores(correct_chunk_t[t], found_guessed_t[t], found_correct_t[t])
        per_type[t] = {
            "precision": tp,
            "recall": tr,
            "FB1": tf,
            "found_gold": found_correct_t[t],
            "found_guessed": found_guessed_t[t],
            "correct": correct_chunk_t[t],
        }
    return {
        "accuracy": 100 * correct_tags / token_counter if token_counter > 0 else 0.0,
        "precision": p,
        "recall": r,
        "FB1": f,
        "per_type": per_type,
        "tokens": token_counter,
        "phrases": found_correct,
        "found_guessed": found_guessed,
        "correct": correct_chunk,
    }


# -- SQuAD v1.1 evaluate-v1.1.py ---------------------------------------------------------------


def _v1_normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _v1_f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = _v1_normalize_answer(prediction).split()
    ground_truth_tokens = _v1_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def _v1_exact_match_score(prediction: str, ground_truth: str) -> bool:
    return _v1_normalize_answer(prediction) == _v1_normalize_answer(ground_truth)


def _metric_max_over_ground_truths(metric_fn: Any, prediction: str, ground_truths: list) -> Any:
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def squad_v1_evaluate(dataset: list[dict], predictions: dict[str, str]) -> dict[str, float]:
    """`evaluate(dataset, predictions)` of evaluate-v1.1.py: `{"exact_match", "f1"}` in percent."""
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue  # "Unanswered question ... will receive score 0."
                ground_truths = list(map(lambda x: x["text"], qa["answers"]))
                prediction = predictions[qa["id"]]
                exact_match += _metric_max_over_ground_truths(
                    _v1_exact_match_score, prediction, ground_truths
                )
                f1 += _metric_max_over_ground_truths(_v1_f1_score, prediction, ground_truths)
    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total
    return {"exact_match": exact_match, "f1": f1}


# -- SQuAD v2.0 evaluate-v2.0.py ---------------------------------------------------------------


def _v2_normalize_answer(s: str) -> str:
    def remove_articles(text: str) -> str:
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return _v2_normalize_answer(s).split()


def _compute_exact(a_gold: str, a_pred: str) -> int:
    return int(_v2_normalize_answer(a_gold) == _v2_normalize_answer(a_pred))


def _compute_f1(a_gold: str, a_pred: str) -> float:
    gold_toks = _get_tokens(a_gold)
    pred_toks = _get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def squad_v2_evaluate(dataset: list[dict], preds: dict[str, str]) -> dict[str, float]:
    """evaluate-v2.0.py's main with no `--na-prob-file` (every no-answer probability 0)."""
    qid_to_has_ans = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid_to_has_ans[qa["id"]] = bool(qa["answers"])
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = {}, {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                gold_answers = [a["text"] for a in qa["answers"] if _v2_normalize_answer(a["text"])]
                if not gold_answers:
                    gold_answers = [""]
                if qid not in preds:
                    continue
                a_pred = preds[qid]
                exact_raw[qid] = max(_compute_exact(a, a_pred) for a in gold_answers)
                f1_raw[qid] = max(_compute_f1(a, a_pred) for a in gold_answers)
    na_probs = {k: 0.0 for k in preds}
    na_prob_thresh = 1.0

    def apply_no_ans_threshold(scores: dict) -> dict:
        new_scores = {}
        for qid, s in scores.items():
            pred_na = na_probs[qid] > na_prob_thresh
            new_scores[qid] = float(not qid_to_has_ans[qid]) if pred_na else s
        return new_scores

    exact = apply_no_ans_threshold(exact_raw)
    f1 = apply_no_ans_threshold(f1_raw)

    def make_eval_dict(qid_list: list[str] | None = None) -> dict[str, float]:
        if not qid_list:
            total = len(exact)
            return {
                "exact": 100.0 * sum(exact.values()) / total,
                "f1": 100.0 * sum(f1.values()) / total,
                "total": total,
            }
        total = len(qid_list)
        return {
            "exact": 100.0 * sum(exact[k] for k in qid_list) / total,
            "f1": 100.0 * sum(f1[k] for k in qid_list) / total,
            "total": total,
        }

    out = make_eval_dict()
    for prefix, ids in (("HasAns", has_ans_qids), ("NoAns", no_ans_qids)):
        if ids:
            for k, v in make_eval_dict(ids).items():
                out[f"{prefix}_{k}"] = v
    return out


def read_squad_dataset(path: str | Path) -> list[dict]:
    """The `data` list of a SQuAD JSON file, as the official scripts read it."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["data"]
