"""Entity-level precision, recall and F1 with conlleval's chunk rules.

A predicted entity counts only if its type, first token and last token all equal a gold
entity's. Chunks are read with the rules of the CoNLL-2000 `conlleval` script (`endOfChunk`
/ `startOfChunk`), which decode IOB1, IOB2 and IOE tags alike; BIOES `S-`/`E-` tags follow
the extension `seqeval` (default mode) adds to them, since the original script predates
BIOES. A tag is `PREFIX-TYPE` (`B-PER`), or `O`; an ill-formed sequence (`O I-PER`) still
yields chunks, as conlleval reads it, so models are not rewarded for invalid tags.

Numbers equal `seqeval.metrics.classification_report` (default mode) and the conlleval
script's (which prints them as percentages); here they are fractions.

Example:
    >>> gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    >>> pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    >>> get_entities(gold[0])
    [('PER', 0, 1), ('LOC', 3, 3)]
    >>> entity_f1(pred, gold)["f1"]
    0.5
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any


def _split(tag: str) -> tuple[str, str]:
    """`"B-PER"` -> `("B", "PER")`; `"O"` -> `("O", "_")` (seqeval's reading of bare tags)."""
    return tag[:1], (tag[1:].split("-", maxsplit=1)[-1] or "_")


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    # conlleval's endOfChunk, plus S (a one-token chunk) and E (always ends) for BIOES.
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    # conlleval's startOfChunk: I or E after O/E/S opens a chunk (IOB1, ill-formed IOB2).
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks of one tag sequence as `(type, first, last)`, indices inclusive.

    Example:
        >>> get_entities(["S-LOC", "B-PER", "E-PER", "I-ORG"])
        [('LOC', 0, 0), ('PER', 1, 2), ('ORG', 3, 3)]
    """
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, type_ = _split(tag)
        if _end_of_chunk(prev_tag, prefix, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, prefix, prev_type, type_):
            begin = i
        prev_tag, prev_type = prefix, type_
    return chunks


def _check(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predicted sentences but {len(references)} gold sentences; "
            "pass one tag sequence per sentence"
        )
    for i, (p, g) in enumerate(zip(predictions, references)):
        if len(p) != len(g):
            raise ValueError(
                f"sentence {i}: {len(p)} predicted tags but {len(g)} gold tags; predict one tag "
                "per word (map BPE-piece predictions back to words first)"
            )


def entity_f1(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Overall and per-type entity precision/recall/F1, plus token accuracy (as conlleval).

    Args:
        predictions: predicted tags, one list per sentence.
        references: gold tags, one list per sentence, same lengths.

    Returns:
        `{"precision", "recall", "f1", "accuracy", "per_type": {type: {"precision",
        "recall", "f1", "support"}}}`; precision is 0 with no predicted entity, recall 0
        with no gold entity (conlleval's convention).

    Example:
        >>> r = entity_f1([["B-PER", "O"]], [["B-PER", "B-LOC"]])
        >>> r["precision"], r["recall"], r["per_type"]["LOC"]["support"]
        (1.0, 0.5, 1)
    """
    _check(predictions, references)
    # Sentences are scored apart: a chunk never spans a sentence break.
    found_pred, found_gold, correct = Counter(), Counter(), Counter()
    tokens = tokens_correct = 0
    for pred, gold in zip(predictions, references):
        p_chunks, g_chunks = set(get_entities(pred)), set(get_entities(gold))
        found_pred.update(t for t, _, _ in p_chunks)
        found_gold.update(t for t, _, _ in g_chunks)
        correct.update(t for t, _, _ in p_chunks & g_chunks)
        tokens += len(gold)
        tokens_correct += sum(p == g for p, g in zip(pred, gold))

    def prf(c: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
        p = c / n_pred if n_pred else 0.0
        r = c / n_gold if n_gold else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    per_type = {}
    for type_ in sorted(set(found_pred) | set(found_gold)):
        p, r, f = prf(correct[type_], found_pred[type_], found_gold[type_])
        per_type[type_] = {"precision": p, "recall": r, "f1": f, "support": found_gold[type_]}
    p, r, f = prf(sum(correct.values()), sum(found_pred.values()), sum(found_gold.values()))
    return {
        "precision": p,
        "recall": r,
        "f1": f,
        "accuracy": tokens_correct / tokens if tokens else 0.0,
        "per_type": per_type,
    }
