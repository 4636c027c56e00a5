"""Evaluation metrics for every task, and `compute_metrics(task)` for the Trainer.

- `metrics`: accuracy, precision/recall/F1, MCC, Pearson/Spearman, perplexity, the
  `compute_metrics(task)` factory and `format_table(metrics)`.
- `ner`: entity-level F1 with conlleval's chunk rules.
- `squad`: SQuAD v1.1/v2.0 exact match and F1 with the official normalization.
- `generation_metrics`: ROUGE-1/2/L/Lsum and BLEU equal to `rouge-score` and `sacrebleu`.

Example:
    >>> from gpt2kit.evaluation import compute_metrics, format_table
    >>> fn = compute_metrics("multiple-choice")
    >>> fn([[0.1, 2.0], [3.0, 0.0]], [1, 1])
    {'accuracy': 0.5}
"""

from .generation_metrics import bleu, rouge
from .metrics import (
    accuracy,
    classification_metrics,
    compute_metrics,
    format_table,
    matthews_corrcoef,
    multilabel_metrics,
    pearson,
    perplexity,
    precision_recall_f1,
    regression_metrics,
    spearman,
)
from .ner import entity_f1, get_entities
from .squad import normalize_answer, squad_metrics

__all__ = [
    "accuracy",
    "bleu",
    "classification_metrics",
    "compute_metrics",
    "entity_f1",
    "format_table",
    "get_entities",
    "matthews_corrcoef",
    "multilabel_metrics",
    "normalize_answer",
    "pearson",
    "perplexity",
    "precision_recall_f1",
    "regression_metrics",
    "rouge",
    "spearman",
    "squad_metrics",
]
