"""ROUGE-1/2/L/Lsum and corpus BLEU for generated text, equal to `rouge-score` and `sacrebleu`.

Both are reimplemented here rather than required: each is under a hundred lines, and the
package stays free of `nltk`/`absl` (pulled by `rouge-score`) and `portalocker`/`lxml`
(pulled by `sacrebleu`). The tests pin the numbers to those libraries' outputs on fixed
examples. ROUGE with Porter stemming (`use_stemmer=True`) is delegated to `rouge-score`
when it is installed (`pip install gpt2kit[metrics]`), since a faithful stemmer is long.

- ROUGE follows `rouge_score.rouge_scorer.RougeScorer` (no stemming): text lower-cased,
  every run of non-`[a-z0-9]` characters a separator. `rougeLsum` splits summaries into
  sentences at newlines. Several references: the best F-measure per example. Reported as
  the mean F-measure over examples, in [0, 1].
- BLEU follows `sacrebleu.corpus_bleu` defaults: the `13a` tokenizer, 4-gram, `exp`
  smoothing, closest reference length for the brevity penalty; in [0, 100].

Example:
    >>> r = rouge(["the cat sat on the mat"], ["the cat is on the mat"])
    >>> round(r["rouge1"], 4), round(r["rouge2"], 4)
    (0.8333, 0.6)
    >>> round(bleu(["the cat sat on the mat"], [["the cat sat on the mat"]])["bleu"], 1)
    100.0
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokenize(text: str) -> list[str]:
    """`rouge_score`'s tokenizer without stemming: lower case, split on non-alphanumerics.

    Example:
        >>> rouge_tokenize("Hello, World! It's 2024.")
        ['hello', 'world', 'it', 's', '2024']
    """
    return [t for t in _NON_ALNUM.sub(" ", text.lower()).split() if t]


def _fmeasure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _score(hits: int, n_pred: int, n_ref: int) -> tuple[float, float, float]:
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_ref if n_ref else 0.0
    return precision, recall, _fmeasure(precision, recall)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _lcs_table(ref: Sequence[str], can: Sequence[str]) -> list[list[int]]:
    rows, cols = len(ref), len(can)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(1, rows + 1):
        for j in range(1, cols + 1):
            if ref[i - 1] == can[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table


def _lcs_indices(ref: Sequence[str], can: Sequence[str]) -> list[int]:
    # rouge_score's _backtrack_norec: which reference tokens one LCS uses.
    table = _lcs_table(ref, can)
    i, j, out = len(ref), len(can), []
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            out.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out[::-1]


def _summary_lcs(
    ref_sents: list[list[str]], can_sents: list[list[str]]
) -> tuple[float, float, float]:
    # Summary-level LCS (Lin 2004, sec. 3.2): per reference sentence, the union of its LCS
    # with every candidate sentence; each token counted at most as often as it occurs.
    m, n = sum(map(len, ref_sents)), sum(map(len, can_sents))
    if not m or not n:
        return 0.0, 0.0, 0.0
    ref_counts = Counter(t for s in ref_sents for t in s)
    can_counts = Counter(t for s in can_sents for t in s)
    hits = 0
    for ref in ref_sents:
        union = sorted(set().union(*(_lcs_indices(ref, c) for c in can_sents)))
        for token in (ref[i] for i in union):
            if can_counts[token] > 0 and ref_counts[token] > 0:
                hits += 1
                can_counts[token] -= 1
                ref_counts[token] -= 1
    return _score(hits, n, m)


def rouge_scores(
    prediction: str, reference: str, rouge_types: Sequence[str] = ROUGE_TYPES
) -> dict[str, tuple[float, float, float]]:
    """`(precision, recall, fmeasure)` per ROUGE type for one prediction/reference pair.

    Example:
        >>> rouge_scores("a b c", "a b d", ["rouge1"])["rouge1"][2]
        0.6666666666666666
    """
    pred, ref = rouge_tokenize(prediction), rouge_tokenize(reference)
    out = {}
    for kind in rouge_types:
        if kind == "rougeL":
            lcs = _lcs_table(ref, pred)[-1][-1] if ref and pred else 0
            out[kind] = _score(lcs, len(pred), len(ref))
        elif kind == "rougeLsum":
            sents = lambda text: [rouge_tokenize(s) for s in text.split("\n") if s]  # noqa: E731
            out[kind] = _summary_lcs(sents(reference), sents(prediction))
        elif re.fullmatch(r"rouge[1-9]", kind):
            n = int(kind[5:])
            p_grams, r_grams = _ngrams(pred, n), _ngrams(ref, n)
            hits = sum((p_grams & r_grams).values())
            out[kind] = _score(hits, sum(p_grams.values()), sum(r_grams.values()))
        else:
            raise ValueError(
                f"unknown ROUGE type {kind!r}; use rouge1..rouge9, rougeL or rougeLsum"
            )
    return out


def rouge(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    rouge_types: Sequence[str] = ROUGE_TYPES,
    use_stemmer: bool = False,
) -> dict[str, float]:
    """Mean ROUGE F-measure over examples, per type (what `evaluate.load("rouge")` reports
    without bootstrap aggregation).

    Args:
        predictions: generated texts.
        references: one reference text, or a list of them, per prediction.
        rouge_types: which scores.
        use_stemmer: Porter-stem tokens longer than 3 characters (needs `rouge-score`).

    Example:
        >>> rouge(["a b"], [["x y", "a b"]], ["rouge1"])
        {'rouge1': 1.0}
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; pass one "
            "reference (or list of references) per prediction"
        )
    scorer = None
    if use_stemmer:
        try:
            from rouge_score import rouge_scorer
        except ImportError as err:
            raise ImportError(
                "use_stemmer=True needs the rouge-score package: pip install 'gpt2kit[metrics]'"
            ) from err
        scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=True)
    totals = dict.fromkeys(rouge_types, 0.0)
    for pred, refs in zip(predictions, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        for kind in rouge_types:
            if scorer is not None:
                best = max(scorer.score(r, pred)[kind].fmeasure for r in refs)
            else:
                best = max(rouge_scores(pred, r, [kind])[kind][2] for r in refs)
            totals[kind] += best
    n = len(predictions)
    return {k: (v / n if n else 0.0) for k, v in totals.items()}


# sacrebleu's TokenizerRegexp, applied after the 13a preprocessing.
_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation and symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
]


def tokenize_13a(line: str) -> list[str]:
    """The `13a` tokenizer (mteval-v13a, as sacrebleu implements it).

    Example:
        >>> tokenize_13a("Hello, world. It costs $3.50!")
        ['Hello', ',', 'world', '.', 'It', 'costs', '$', '3.50', '!']
    """
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        for entity, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
            line = line.replace(entity, char)
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return line.split()


def bleu(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]] | Sequence[str],
    max_order: int = 4,
    lowercase: bool = False,
) -> dict[str, Any]:
    """Corpus BLEU with sacrebleu's defaults.

    Args:
        predictions: generated texts.
        references: per prediction, a reference text or a list of reference texts.
            (sacrebleu's own layout, one list per reference *set*, is
            `list(zip(*references))` of this.)
        max_order: longest n-gram.
        lowercase: compare lower-cased text.

    Returns:
        `{"bleu": score in [0, 100], "precisions": [p1..p4] in [0, 100], "brevity_penalty",
        "sys_len", "ref_len"}`.

    Example:
        >>> round(bleu(["a b c d e"], ["a b c d f"])["bleu"], 2)
        66.87
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; pass one "
            "reference (or list of references) per prediction"
        )
    correct, total = [0] * max_order, [0] * max_order
    sys_len = ref_len = 0
    for pred, refs in zip(predictions, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if lowercase:
            pred, refs = pred.lower(), [r.lower() for r in refs]
        # sacrebleu strips trailing whitespace before tokenizing.
        hyp = tokenize_13a(pred.rstrip())
        ref_toks = [tokenize_13a(r.rstrip()) for r in refs]
        sys_len += len(hyp)
        # Closest reference length; ties go to the shorter reference.
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in ref_toks)[1]
        for n in range(1, max_order + 1):
            hyp_grams = _ngrams(hyp, n)
            max_ref: Counter = Counter()
            for r in ref_toks:
                max_ref |= _ngrams(r, n)
            correct[n - 1] += sum((hyp_grams & max_ref).values())
            total[n - 1] += sum(hyp_grams.values())

    precisions = [0.0] * max_order
    smooth = 1.0
    for n in range(max_order):
        if total[n] == 0:
            break
        if correct[n] == 0:  # 'exp' smoothing: 1/2, 1/4, ... of a match
            smooth *= 2
            precisions[n] = 100.0 / (smooth * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    else:
        bp = 1.0
    log_sum = sum(math.log(p) if p > 0 else -9999999999 for p in precisions)
    score = bp * math.exp(log_sum / max_order)
    return {
        "bleu": score,
        "precisions": precisions,
        "brevity_penalty": bp,
        "sys_len": sys_len,
        "ref_len": ref_len,
    }
