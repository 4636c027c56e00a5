"""Classification and regression metrics in numpy, with the numbers scikit-learn and scipy give.

Every function takes array-likes (lists, numpy arrays, torch tensors) and returns plain Python
floats, so results go straight into JSON logs. Scores are fractions in [0, 1] (correlations in
[-1, 1]), as scikit-learn reports them. We implement them rather than depend on scikit-learn
or scipy: each is a few lines, and the tests pin them to values those libraries produce.

Example:
    >>> from gpt2kit.evaluation.metrics import accuracy, precision_recall_f1
    >>> accuracy([0, 1, 1, 2], [0, 1, 2, 2])
    0.75
    >>> round(precision_recall_f1([0, 1, 1, 2], [0, 1, 2, 2], average="macro")["f1"], 4)
    0.7778
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tasks import registry
from .generation_metrics import bleu, rouge
from .ner import entity_f1
from .squad import squad_metrics

AVERAGES = ("macro", "micro", "weighted", "binary", None)


def to_numpy(values: Any) -> np.ndarray:
    """`values` (list, numpy array, torch tensor on any device) as a numpy array."""
    if hasattr(values, "detach"):  # torch.Tensor, without importing torch here
        values = (
            values.detach().float().cpu().numpy()
            if values.is_floating_point()
            else values.detach().cpu().numpy()
        )
    return np.asarray(values)


def _pair(predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, gold = to_numpy(predictions).reshape(-1), to_numpy(labels).reshape(-1)
    if pred.shape != gold.shape:
        raise ValueError(
            f"predictions ({pred.shape[0]}) and labels ({gold.shape[0]}) differ in length; "
            "pass one prediction per label"
        )
    return pred, gold


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of predictions equal to their label (0.0 for empty input).

    Example:
        >>> accuracy([1, 0, 1], [1, 1, 1])
        0.6666666666666666
    """
    pred, gold = _pair(predictions, labels)
    return float((pred == gold).mean()) if gold.size else 0.0


def _safe_div(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    out = np.full(np.shape(num), float(zero_division), dtype=np.float64)
    np.divide(num, den, out=out, where=np.asarray(den) != 0)
    return out


def precision_recall_f1(
    predictions: Any,
    labels: Any,
    average: str | None = "macro",
    label_ids: Sequence[int] | None = None,
    pos_label: int = 1,
    zero_division: float = 0.0,
) -> dict[str, Any]:
    """Precision, recall and F1 as `sklearn.metrics.precision_recall_fscore_support` computes them.

    Args:
        predictions: predicted class ids `[N]`.
        labels: gold class ids `[N]`.
        average: `"macro"` (unweighted mean over classes), `"micro"` (global counts; equals
            accuracy for single-label data over all classes), `"weighted"` (mean weighted by
            support), `"binary"` (the `pos_label` class only) or `None` (per-class arrays).
        label_ids: the classes to score; default: every class in predictions or labels.
        pos_label: the positive class for `average="binary"`.
        zero_division: value of a ratio whose denominator is 0 (scikit-learn's default warns
            and uses 0).

    Returns:
        `{"precision", "recall", "f1", "support"}`; floats, or lists per class when
        `average=None`.

    Example:
        >>> r = precision_recall_f1([0, 1, 1], [0, 1, 0], average="binary")
        >>> r["precision"], r["recall"]
        (0.5, 1.0)
    """
    if average not in AVERAGES:
        raise ValueError(f"average={average!r}; use one of {AVERAGES}")
    pred, gold = _pair(predictions, labels)
    if average == "binary":
        classes = np.asarray([pos_label])
    elif label_ids is not None:
        classes = np.asarray(list(label_ids))
    else:
        classes = np.union1d(pred, gold)
    # Per class: true positives, predicted count, gold count. [K]
    tp = np.array([np.sum((pred == c) & (gold == c)) for c in classes], dtype=np.float64)
    n_pred = np.array([np.sum(pred == c) for c in classes], dtype=np.float64)
    n_gold = np.array([np.sum(gold == c) for c in classes], dtype=np.float64)
    if average == "micro":
        tp, n_pred, n_gold = (
            tp.sum(keepdims=True),
            n_pred.sum(keepdims=True),
            n_gold.sum(keepdims=True),
        )
    precision = _safe_div(tp, n_pred, zero_division)
    recall = _safe_div(tp, n_gold, zero_division)
    f1 = _safe_div(2 * tp, n_pred + n_gold, zero_division)
    if average is None:
        return {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": n_gold.astype(int).tolist(),
        }
    if average == "weighted":
        weights = n_gold / n_gold.sum() if n_gold.sum() else np.zeros_like(n_gold)
        reduce = lambda x: float(np.sum(x * weights))  # noqa: E731
    else:
        reduce = lambda x: float(np.mean(x)) if x.size else 0.0  # noqa: E731
    return {
        "precision": reduce(precision),
        "recall": reduce(recall),
        "f1": reduce(f1),
        "support": int(n_gold.sum()),
    }


def matthews_corrcoef(predictions: Any, labels: Any) -> float:
    """Matthews correlation coefficient, multi-class form (as scikit-learn; 0.0 when undefined).

    Example:
        >>> round(matthews_corrcoef([1, 0, 1, 1], [1, 0, 0, 1]), 4)
        0.5774
    """
    pred, gold = _pair(predictions, labels)
    classes, both = np.unique(np.concatenate([gold, pred]), return_inverse=True)
    g, p = both[: gold.size], both[gold.size :]
    k = classes.size
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (g, p), 1)
    t_sum, p_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    n_correct, n = np.trace(confusion), confusion.sum()
    cov_ytyp = n_correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n**2 - np.dot(p_sum, p_sum)
    cov_ytyt = n**2 - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / math.sqrt(cov_ytyt * cov_ypyp))


def pearson(predictions: Any, labels: Any) -> float:
    """Pearson correlation (`scipy.stats.pearsonr`'s statistic; NaN when a side is constant).

    Example:
        >>> pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]) > 0.99
        True
    """
    x, y = (a.astype(np.float64) for a in _pair(predictions, labels))
    if x.size < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if den == 0:
        return float("nan")
    return float(max(-1.0, min(1.0, float(np.dot(x, y)) / den)))


def rankdata(values: Any) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (`scipy.stats.rankdata(method="average")`).

    Example:
        >>> rankdata([10, 20, 20, 5]).tolist()
        [2.0, 3.5, 3.5, 1.0]
    """
    a = to_numpy(values).reshape(-1)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start index of each run of equal values; a run of length L at [s, s+L) gets rank s+(L+1)/2.
    starts = np.flatnonzero(np.concatenate([[True], sorted_a[1:] != sorted_a[:-1]]))
    ends = np.concatenate([starts[1:], [a.size]])
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def spearman(predictions: Any, labels: Any) -> float:
    """Spearman rank correlation: Pearson of average ranks (`scipy.stats.spearmanr`'s statistic).

    Example:
        >>> spearman([1, 2, 3, 4], [10, 20, 30, 100])
        1.0
    """
    pred, gold = _pair(predictions, labels)
    return pearson(rankdata(pred), rankdata(gold))


def perplexity(mean_loss: float) -> float:
    """`exp(mean token cross-entropy)`; `inf` when the loss overflows.

    Example:
        >>> round(perplexity(math.log(20.0)), 6)
        20.0
    """
    try:
        return math.exp(float(mean_loss))
    except OverflowError:
        return float("inf")


def token_cross_entropy(logits: Any, labels: Any, shift: bool = True) -> tuple[float, int]:
    """Summed next-token cross-entropy (nats) and the number of scored tokens.

    Args:
        logits: `[..., T, V]` scores.
        labels: `[..., T]` token ids; `-100` is ignored.
        shift: labels are the inputs (predict token t+1 from position t), as the LM heads take
            them; `False` when `labels[t]` already is the target of `logits[t]`.

    Example:
        >>> total, n = token_cross_entropy(np.zeros((1, 3, 4)), np.array([[0, 1, 2]]))
        >>> round(total / n, 4) == round(math.log(4), 4), n
        (True, 2)
    """
    scores = to_numpy(logits).astype(np.float64)
    gold = to_numpy(labels).astype(np.int64)
    if shift:
        scores, gold = scores[..., :-1, :], gold[..., 1:]
    scores = scores.reshape(-1, scores.shape[-1])
    gold = gold.reshape(-1)
    keep = gold != -100
    scores, gold = scores[keep], gold[keep]
    if gold.size == 0:
        return 0.0, 0
    top = scores.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(scores - top).sum(axis=-1)) + top[:, 0]
    return float(np.sum(log_z - scores[np.arange(gold.size), gold])), int(gold.size)


def multilabel_metrics(
    predictions: Any, labels: Any, threshold: float = 0.0, prefix: str = ""
) -> dict[str, float]:
    """Metrics for multi-label classification: subset accuracy, micro and macro F1.

    Args:
        predictions: `[N, L]` scores; a label is predicted where the score exceeds `threshold`
            (0.0 on logits is probability 0.5).
        labels: `[N, L]` 0/1 targets.
        threshold: decision threshold on `predictions`.
        prefix: prepended to every key.

    Example:
        >>> m = multilabel_metrics([[2.0, -1.0], [1.0, 3.0]], [[1, 0], [1, 0]])
        >>> m["subset_accuracy"], round(m["f1_micro"], 4)
        (0.5, 0.8)
    """
    pred = to_numpy(predictions) > threshold
    gold = to_numpy(labels).astype(np.float64) > 0.5
    if pred.shape != gold.shape or pred.ndim != 2:
        raise ValueError(
            f"multi-label predictions {pred.shape} and labels {gold.shape} must both be [N, num_labels]"
        )
    tp = (pred & gold).sum(axis=0).astype(np.float64)
    n_pred, n_gold = pred.sum(axis=0).astype(np.float64), gold.sum(axis=0).astype(np.float64)
    f1_per_label = _safe_div(2 * tp, n_pred + n_gold, 0.0)
    micro = _safe_div(np.array(2 * tp.sum()), np.array(n_pred.sum() + n_gold.sum()), 0.0)
    return {
        f"{prefix}subset_accuracy": float((pred == gold).all(axis=1).mean()) if len(gold) else 0.0,
        f"{prefix}f1_micro": float(micro),
        f"{prefix}f1_macro": float(f1_per_label.mean()) if f1_per_label.size else 0.0,
    }


def classification_metrics(predictions: Any, labels: Any, prefix: str = "") -> dict[str, float]:
    """Accuracy, macro/micro/weighted F1 and MCC for class ids (the GLUE-style summary).

    Example:
        >>> m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0])
        >>> m["accuracy"], round(m["f1_macro"], 4)
        (0.75, 0.7333)
    """
    out = {f"{prefix}accuracy": accuracy(predictions, labels)}
    for average in ("macro", "micro", "weighted"):
        scores = precision_recall_f1(predictions, labels, average=average)
        out[f"{prefix}precision_{average}"] = scores["precision"]
        out[f"{prefix}recall_{average}"] = scores["recall"]
        out[f"{prefix}f1_{average}"] = scores["f1"]
    out[f"{prefix}mcc"] = matthews_corrcoef(predictions, labels)
    return out


def regression_metrics(predictions: Any, labels: Any, prefix: str = "") -> dict[str, float]:
    """Pearson, Spearman, their mean (STS-B's headline number), MSE and MAE.

    Example:
        >>> m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
        >>> m["spearman"], round(m["mse"], 4)
        (1.0, 0.3333)
    """
    pred, gold = (a.astype(np.float64) for a in _pair(predictions, labels))
    p, s = pearson(pred, gold), spearman(pred, gold)
    return {
        f"{prefix}pearson": p,
        f"{prefix}spearman": s,
        f"{prefix}pearson_spearman_mean": (p + s) / 2,
        f"{prefix}mse": float(np.mean((pred - gold) ** 2)) if pred.size else 0.0,
        f"{prefix}mae": float(np.mean(np.abs(pred - gold))) if pred.size else 0.0,
    }


# --------------------------------------------------------------------------------------------
# The Trainer's entry point: one function per task, called on (predictions, labels).
# --------------------------------------------------------------------------------------------

# task name or alias -> metric family, read from the task registry (`gpt2kit.tasks.registry`);
# the families are accepted by their own names too
TASK_ALIASES: dict[str, str] = {
    **{name: t.metric for t in registry.TASKS if t.metric for name in (t.name, *t.aliases)},
    **{family: family for family in registry.METRIC_FAMILIES},
}


def _first(predictions: Any) -> Any:
    # Model outputs often arrive as a tuple (logits, extra...); metrics read the logits.
    if isinstance(predictions, (tuple, list)) and predictions and hasattr(predictions[0], "shape"):
        return predictions[0]
    return predictions


def _classification_fn(problem_type: str | None, threshold: float) -> Any:
    def fn(predictions: Any, labels: Any) -> dict[str, float]:
        scores, gold = to_numpy(_first(predictions)), to_numpy(labels)
        problem = problem_type
        if problem is None:
            if scores.ndim == 2 and gold.shape == scores.shape and scores.shape[1] > 1:
                problem = "multi_label_classification"
            elif np.issubdtype(gold.dtype, np.floating) and (
                scores.ndim == 1 or scores.shape[-1] == 1
            ):
                problem = "regression"
            else:
                problem = "single_label_classification"
        if problem == "regression":
            return regression_metrics(scores.reshape(-1), gold.reshape(-1))
        if problem == "multi_label_classification":
            return multilabel_metrics(scores, gold, threshold=threshold)
        ids = scores.argmax(axis=-1) if scores.ndim == 2 else scores
        return classification_metrics(ids, gold)

    return fn


def _token_classification_fn(
    id2label: dict[int, str] | None, decode: Any = None, references: Any = None
) -> Any:
    def entity_scores(pred_tags: list[list[str]], gold_tags: list[list[str]]) -> dict[str, float]:
        scores_ = entity_f1(pred_tags, gold_tags)
        out = {f"entity_{key}": scores_[key] for key in ("precision", "recall", "f1")}
        for type_, s in scores_["per_type"].items():
            for key in ("precision", "recall", "f1"):
                out[f"{type_}_{key}"] = s[key]
        return out

    def fn(predictions: Any, labels: Any) -> dict[str, float]:
        if decode is not None and references is not None:
            # Whole sentences: word tags gathered from every window (load_task_data's decode),
            # scored against the file's gold tags, so nothing is left out.
            pred_tags = decode(predictions)
            gold_tags = [list(r) for r in references]
            n = sum(len(g) for g in gold_tags)
            right = sum(p == g for ps, gs in zip(pred_tags, gold_tags) for p, g in zip(ps, gs))
            return {
                "token_accuracy": right / n if n else 0.0,
                **entity_scores(pred_tags, gold_tags),
            }
        scores, gold = to_numpy(_first(predictions)), to_numpy(labels)
        ids = scores.argmax(axis=-1) if scores.ndim == gold.ndim + 1 else scores
        keep = gold != -100  # pads and non-first BPE pieces carry no label
        out = {"token_accuracy": float((ids[keep] == gold[keep]).mean()) if keep.any() else 0.0}
        if id2label:
            names = {int(k): v for k, v in id2label.items()}
            pred_tags = [[names[int(i)] for i in row[m]] for row, m in zip(ids, keep)]
            gold_tags = [[names[int(i)] for i in row[m]] for row, m in zip(gold, keep)]
            out.update(entity_scores(pred_tags, gold_tags))
        return out

    return fn


def _qa_fn(decode: Any, references: Any, version: str | None) -> Any:
    def fn(predictions: Any, labels: Any = None) -> dict[str, float]:
        preds = decode(predictions) if decode is not None else predictions
        refs = references if references is not None else labels
        if not isinstance(preds, dict):
            preds = {str(i): p for i, p in enumerate(preds)}
        if not isinstance(refs, dict):
            refs = {str(i): ([r] if isinstance(r, str) else list(r)) for i, r in enumerate(refs)}
        scores = squad_metrics(preds, refs, version=version)
        # fractions, as every other metric in the table (squad_metrics itself gives the
        # official scripts' percentages)
        return {
            k: (v / 100.0 if not k.endswith(("total", "thresh")) else v) for k, v in scores.items()
        }

    return fn


def _lm_fn(shift: bool = True) -> Any:
    # shift=False: labels[t] is the target of logits[t] (an encoder-decoder's labels)
    def fn(predictions: Any, labels: Any = None) -> dict[str, float]:
        scores = _first(predictions)
        if np.ndim(to_numpy(scores)) == 0:  # already the mean evaluation loss
            loss = float(to_numpy(scores))
            return {"loss": loss, "perplexity": perplexity(loss)}
        total, n = token_cross_entropy(scores, labels, shift=shift)
        loss = total / n if n else 0.0
        logits, gold = to_numpy(scores), to_numpy(labels)
        if shift:
            logits, gold = logits[..., :-1, :], gold[..., 1:]
        keep = gold != -100
        acc = float((logits.argmax(-1)[keep] == gold[keep]).mean()) if keep.any() else 0.0
        return {"loss": loss, "perplexity": perplexity(loss), "token_accuracy": acc}

    return fn


def _is_text(value: Any) -> bool:
    # A text, or a list of reference texts.
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _generation_fn(tokenizer: Any, shift: bool = True) -> Any:
    def texts(values: Any, what: str) -> list[Any]:
        if isinstance(values, (list, tuple)) and all(_is_text(v) for v in values):
            return list(values)
        ids = to_numpy(values)
        if tokenizer is None:
            raise ValueError(
                f"{what} are token ids; pass tokenizer= to compute_metrics('seq2seq', ...) "
                "so they can be decoded, or pass decoded strings"
            )
        pad = getattr(tokenizer, "pad_token_id", None) or 0
        rows = [[int(t) for t in row if t != -100] for row in np.where(ids == -100, pad, ids)]
        return tokenizer.batch_decode(rows, skip_special_tokens=True)

    def fn(predictions: Any, labels: Any) -> dict[str, float]:
        scores = _first(predictions)
        if hasattr(scores, "shape") and np.ndim(to_numpy(scores)) == 3:
            # Teacher-forced logits: score them as a language model over the target tokens.
            return _lm_fn(shift)(scores, labels)
        preds = [p.strip() for p in texts(scores, "predictions")]
        refs = texts(labels, "labels")
        refs = [r.strip() if isinstance(r, str) else [x.strip() for x in r] for r in refs]
        out = dict(rouge(preds, refs))
        out["bleu"] = bleu(preds, refs)["bleu"]
        return out

    return fn


def compute_metrics(
    task: str,
    *,
    id2label: dict[int, str] | None = None,
    problem_type: str | None = None,
    threshold: float = 0.0,
    tokenizer: Any = None,
    decode: Any = None,
    references: Any = None,
    squad_version: str | None = None,
) -> Any:
    """The metric function for a task: `fn(predictions, labels) -> {name: float}`.

    What `fn` expects and returns, per task:

    - classification (`sequence-`, `text-`, `document-classification`): logits `[N, K]` or
      class ids `[N]` -> accuracy, precision/recall/F1 (macro, micro, weighted), MCC;
      regression (`[N]`/`[N, 1]` scores, float labels) -> Pearson, Spearman, MSE, MAE;
      multi-label (`[N, K]` logits and 0/1 labels) -> subset accuracy, micro/macro F1.
      `problem_type` forces the choice (else it is inferred from the shapes and dtypes).
    - `token-classification`: logits `[N, T, K]` or ids `[N, T]`, labels `[N, T]` with
      -100 where nothing is scored -> token accuracy, and with `id2label` entity
      precision/recall/F1 (conlleval rules) and `<TYPE>_precision`, `<TYPE>_recall`,
      `<TYPE>_f1`. With `decode` and `references` (what `load_task_data` returns in
      `info["metrics"]`), the logits of every window are gathered into one tag per word of
      every sentence and scored against the file's gold tags (sentences longer than the
      window are scored whole; token accuracy is then per word, as conlleval's).
    - `multiple-choice`: logits `[N, C]`, labels `[N]` -> accuracy.
    - `question-answering`: predicted answer texts (dict id -> text, or a list) and gold
      answers (dict id -> texts, or a list); `decode` maps raw predictions to texts and
      `references` replaces `labels` (what `load_task_data(...)` returns in `info`) ->
      SQuAD EM/F1 as fractions, like every other metric here (HasAns/NoAns for v2;
      `evaluation.squad.squad_metrics` gives the official scripts' percentages).
    - `causal-lm`: logits `[N, T, V]` and labels `[N, T]` (or the mean eval loss alone) ->
      loss, perplexity, next-token accuracy.
    - `seq2seq`, `conditional-generation`: generated and reference texts (or token ids, with
      `tokenizer`) -> ROUGE-1/2/L/Lsum, BLEU; teacher-forced logits -> as `causal-lm`
      (`conditional-generation`: labels unshifted, `labels[t]` scored against `logits[t]`).

    Example:
        >>> fn = compute_metrics("text-classification")
        >>> fn(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))["accuracy"]
        0.5
    """
    fn = _metric_fn(
        task, id2label, problem_type, threshold, tokenizer, decode, references, squad_version
    )

    def call(predictions: Any, labels: Any = None) -> dict[str, float]:
        # The Trainer passes one EvalPrediction(predictions, label_ids); others pass two arrays.
        if labels is None and hasattr(predictions, "label_ids"):
            predictions, labels = predictions.predictions, predictions.label_ids
        return fn(predictions, labels)

    call.__doc__ = f"Metrics for {task!r}: call(predictions, labels) or call(EvalPrediction)."
    return call


def _metric_fn(
    task: str,
    id2label: dict[int, str] | None,
    problem_type: str | None,
    threshold: float,
    tokenizer: Any,
    decode: Any,
    references: Any,
    squad_version: str | None,
) -> Any:
    kind = TASK_ALIASES.get(task)
    if kind is None:
        raise ValueError(f"unknown task {task!r}; use one of {sorted(TASK_ALIASES)}")
    if kind == "classification":
        return _classification_fn(problem_type, threshold)
    if kind == "token-classification":
        return _token_classification_fn(id2label, decode, references)
    if kind == "multiple-choice":
        return lambda predictions, labels: {
            "accuracy": accuracy(to_numpy(_first(predictions)).argmax(axis=-1), labels)
        }
    if kind == "question-answering":
        return _qa_fn(decode, references, squad_version)
    if kind == "causal-lm":
        return _lm_fn()
    # (GPT2ForConditionalGeneration's labels are unshifted, as EncoderDecoderModel's)
    return _generation_fn(tokenizer, shift=task != "conditional-generation")


def format_table(metrics: dict[str, Any], title: str | None = None, digits: int = 4) -> str:
    """Metrics as an aligned two-column text table (nested dicts flattened as `a/b`).

    Example:
        >>> print(format_table({"accuracy": 0.5, "per_type": {"PER": {"f1": 1.0}}}))
        metric            value
        ---------------  ------
        accuracy         0.5000
        per_type/PER/f1  1.0000
    """
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(value, float):
            rows.append((prefix, f"{value:.{digits}f}"))
        elif isinstance(value, (list, tuple)):
            rows.append(
                (
                    prefix,
                    ", ".join(f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in value),
                )
            )
        else:
            rows.append((prefix, str(value)))

    walk("", metrics)
    width = max([len("metric"), *(len(name) for name, _ in rows)])
    vwidth = max([len("value"), *(len(v) for _, v in rows)])
    lines = [title] if title else []
    lines.append(f"{'metric'.ljust(width)}  {'value'.rjust(vwidth)}")
    lines.append(f"{'-' * width}  {'-' * vwidth}")
    lines += [f"{name.ljust(width)}  {value.rjust(vwidth)}" for name, value in rows]
    return "\n".join(lines)
