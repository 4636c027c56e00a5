"""SQuAD exact match and F1, as the official v1.1 and v2.0 evaluation scripts compute them.

Answers are compared after the official normalization (lower case, punctuation and the
articles a/an/the removed, whitespace collapsed); F1 is over the bag of normalized tokens.
A question scores its best match over the gold answers. SQuAD v2.0 adds unanswerable
questions: their gold answer is the empty string, so predicting `""` scores 1 and anything
else 0, and the results split into `HasAns_*` and `NoAns_*`. Scores are percentages, as the
official scripts print them.

Example:
    >>> squad_metrics({"q1": "the Eiffel Tower"}, {"q1": ["Eiffel Tower", "tower"]})
    {'exact_match': 100.0, 'f1': 100.0, 'total': 1}
"""

from __future__ import annotations

import collections
import logging
import re
import string
from collections.abc import Mapping, Sequence

logger = logging.getLogger("gpt2kit")


class _Missing(str):
    """The prediction of an unanswered question: matches nothing, not even "no answer"."""


_MISSING = _Missing("")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official normalization: lower case, no punctuation, no articles, single spaces.

    Example:
        >>> normalize_answer("The  Eiffel-Tower!")
        'eiffeltower'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> int:
    """1 when the normalized strings are equal, else 0.

    Example:
        >>> exact_match("An apple.", "apple")
        1
    """
    if isinstance(prediction, _Missing):
        return 0
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str, version: str = "2.0") -> float:
    """Token-bag F1 of the normalized answers.

    v2.0 scores 1 when both are empty (a correct "no answer") and 0 when only one is; v1.1
    had no empty answers and scores any empty side 0.

    Example:
        >>> round(f1_score("the big cat sat", "a cat sat down"), 4)
        0.6667
    """
    if isinstance(prediction, _Missing):
        return 0.0
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if version == "2.0" and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    version: str | None = None,
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """Exact match and F1 over a set of questions (percentages).

    A question with no prediction scores 0 (a warning is logged), as the official v1.1
    script scores it.

    Args:
        predictions: question id -> predicted answer text (`""` for "no answer").
        references: question id -> gold answer texts (empty list for an unanswerable
            question).
        version: `"1.1"` or `"2.0"`; default `"2.0"` when any question is unanswerable, else
            `"1.1"` (the two agree on answerable questions except for empty predictions).
        na_probs: optional question id -> probability of "no answer"; with it a prediction
            whose probability exceeds `na_prob_thresh` counts as `""`, and the best threshold
            is searched as the official v2.0 script does (`best_exact`, `best_f1`, and their
            thresholds).
        na_prob_thresh: see `na_probs`.

    Returns:
        v1.1: `{"exact_match", "f1", "total"}`. v2.0: `{"exact", "f1", "total", "HasAns_exact",
        "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total"}` (the groups
        present), plus the `best_*` keys with `na_probs`.

    Example:
        >>> r = squad_metrics({"a": "Paris", "b": ""}, {"a": ["Paris"], "b": []})
        >>> r["exact"], r["HasAns_exact"], r["NoAns_exact"]
        (100.0, 100.0, 100.0)
    """
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        # The official v1.1 script: "Unanswered question ... will receive score 0." (An
        # unanswered question scores 0 in v2.0 too, and counts in every total.)
        logger.warning(
            "%d questions have no prediction (first: %s); they score 0",
            len(missing),
            missing[:3],
        )
        predictions = {**predictions, **{qid: _MISSING for qid in missing}}
    if version is None:
        version = "2.0" if any(not _gold(a) for a in references.values()) else "1.1"
    if version not in ("1.1", "2.0"):
        raise ValueError(f"version={version!r}; use '1.1' or '2.0'")

    if version == "1.1":
        em = [max(exact_match(predictions[q], g) for g in golds) for q, golds in references.items()]
        f1 = [
            max(f1_score(predictions[q], g, "1.1") for g in golds)
            for q, golds in references.items()
        ]
        n = len(em)
        return {
            "exact_match": 100.0 * sum(em) / n if n else 0.0,
            "f1": 100.0 * sum(f1) / n if n else 0.0,
            "total": n,
        }

    exact_raw, f1_raw = {}, {}
    for qid, answers in references.items():
        golds = _gold(answers) or [""]
        exact_raw[qid] = max(exact_match(predictions[qid], g) for g in golds)
        f1_raw[qid] = max(f1_score(predictions[qid], g) for g in golds)
    has_ans = {qid: bool(_gold(a)) for qid, a in references.items()}
    exact, f1 = exact_raw, f1_raw
    if na_probs is not None:
        exact = _apply_threshold(exact_raw, na_probs, has_ans, na_prob_thresh)
        f1 = _apply_threshold(f1_raw, na_probs, has_ans, na_prob_thresh)
    out = _totals(exact, f1, list(references))
    for name, want in (("HasAns", True), ("NoAns", False)):
        ids = [q for q in references if has_ans[q] == want]
        if ids:
            for key, value in _totals(exact, f1, ids).items():
                out[f"{name}_{key}"] = value
    if na_probs is not None:
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, thresh = _best_threshold(predictions, raw, na_probs, has_ans)
            out[f"best_{name}"], out[f"best_{name}_thresh"] = best, thresh
    return out


def _gold(answers: Sequence[str]) -> list[str]:
    # The official v2.0 script drops gold answers that normalize to nothing.
    return [a for a in answers if normalize_answer(a)]


def _totals(exact: dict, f1: dict, ids: list[str]) -> dict[str, float]:
    n = len(ids)
    return {
        "exact": 100.0 * sum(exact[q] for q in ids) / n if n else 0.0,
        "f1": 100.0 * sum(f1[q] for q in ids) / n if n else 0.0,
        "total": n,
    }


def _apply_threshold(
    scores: dict, na_probs: Mapping[str, float], has_ans: dict, thresh: float
) -> dict:
    # Above the threshold the model abstains: right exactly when the question has no answer.
    return {
        qid: (float(not has_ans[qid]) if na_probs.get(qid, 0.0) > thresh else s)
        for qid, s in scores.items()
    }


def _best_threshold(
    predictions: Mapping[str, str], scores: dict, na_probs: Mapping[str, float], has_ans: dict
) -> tuple[float, float]:
    # The official find_best_thresh: start from abstaining everywhere, then admit predictions
    # in increasing no-answer probability and keep the best running score.
    num_no_ans = sum(not h for h in has_ans.values())
    cur = best = num_no_ans
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            diff = scores[qid]
        elif predictions[qid] or isinstance(predictions[qid], _Missing):
            diff = -1
        else:
            diff = 0
        cur += diff
        if cur > best:
            best, best_thresh = cur, na_probs[qid]
    return 100.0 * best / len(scores) if scores else 0.0, best_thresh
