"""Extractive question answering around `GPT2ForQuestionAnswering`: features and decoding.

Layout of one feature (one window of one example)::

    [question tokens] [SEP] [context tokens of this window] [pads]

The question comes first because a causal model can only use what it has already read:
context tokens placed after the question are scored knowing the question.

No-answer index: the SEP token right after the question (`feature.null_index`). It has
read the whole question (position 0 would have read one token), so its start+end score is
the model's "no answer here" score. Training points windows that do not contain the
whole answer, and unanswerable examples (SQuAD v2), at it; decoding compares the best
span's score with the null score of the example (the lowest over its windows).

Long contexts are split into windows of at most `max_length` tokens overlapping by
`stride` tokens (the `doc_stride` of SQuAD scripts). Token offsets point into the
original context string, so a predicted span maps back to characters exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

# Longest answer span in tokens, for every decoder of this package (evaluation, pipeline,
# `gpt2kit answer`): one model gets one SQuAD score. 30 is the SQuAD evaluation scripts'
# `max_answer_length` (transformers' `run_qa.py`); transformers' pipeline defaults to 15.
MAX_ANSWER_LENGTH = 30


@dataclass
class QAFeature:
    """One window of one example, ready for the model.

    `offsets[t]` is the `(start, end)` character span in the context of token t, or None
    for question, SEP and padding tokens. `start_position`/`end_position` are the answer's
    token indices (inclusive), or `null_index` twice when this window lacks the answer.
    """

    example_index: int
    input_ids: list[int]
    offsets: list[tuple[int, int] | None]
    null_index: int
    start_position: int | None = None
    end_position: int | None = None

    @property
    def context_token_indices(self) -> list[int]:
        return [t for t, o in enumerate(self.offsets) if o is not None]


@dataclass
class QAPrediction:
    """The answer to one example: `text` ("" for no answer), its character span in the
    context, `score` (start + end logit), `null_score`, and the `n_best` candidates."""

    text: str
    start_char: int
    end_char: int
    score: float
    null_score: float
    n_best: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_impossible(self) -> bool:
        return self.text == ""


def _answer_span(answer: Any, context: str, index: int) -> tuple[int, int] | None:
    """`(start_char, end_char)` of the first answer, None for an unanswerable example."""
    if answer is None:
        return None
    if isinstance(answer, Mapping):
        text, start = answer.get("text"), answer.get("answer_start")
        if isinstance(text, (list, tuple)):
            if not text:
                return None  # SQuAD v2: no answer
            text, start = text[0], start[0]
    else:
        raise ValueError(
            f"answer {index} must be a dict with 'text' and 'answer_start', got {answer!r}"
        )
    start = int(start)
    end = start + len(text)
    if start < 0 or end > len(context) or context[start:end] != text:
        raise ValueError(
            f"answer {index} ({text!r} at character {start}) lies outside its context or does not "
            f"match it (context[{start}:{end}] = {context[start:end]!r}); fix answer_start"
        )
    return start, end


def prepare_qa_features(
    tokenizer: Any,
    questions: Sequence[str],
    contexts: Sequence[str],
    answers: Sequence[Any] | None = None,
    *,
    max_length: int = 384,
    stride: int = 128,
    max_question_length: int = 64,
    sep_token_id: int | None = None,
) -> list[QAFeature]:
    """Tokenize examples into windowed features; see the module docstring for the layout.

    Args:
        tokenizer: a `GPT2Tokenizer` (anything whose `__call__` returns `input_ids` and
            `offset_mapping` for `return_offsets_mapping=True`).
        questions, contexts: one question and one context per example.
        answers: SQuAD style, `{"text": [...], "answer_start": [...]}` (empty lists or
            None: unanswerable) or `{"text": str, "answer_start": int}`; None at inference.
        max_length: tokens per feature (question + SEP + context window).
        stride: tokens shared by consecutive windows.
        max_question_length: longer questions keep their last tokens.
        sep_token_id: the separator after the question; default the tokenizer's EOS.

    Example:
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> feats = prepare_qa_features(GPT2Tokenizer(), ["Who?"], ["Ann met Bob."],
        ...                             [{"text": "Bob", "answer_start": 8}], max_length=16, stride=4)
        >>> f = feats[0]
        >>> f.null_index, f.start_position == f.end_position, f.offsets[f.start_position]
        (2, True, (8, 11))
    """
    if len(questions) != len(contexts) or (answers is not None and len(answers) != len(contexts)):
        raise ValueError("questions, contexts (and answers) must have one entry per example")
    sep = tokenizer.eos_token_id if sep_token_id is None else sep_token_id
    if sep is None:
        raise ValueError("no separator: pass sep_token_id or use a tokenizer with an EOS token")
    features = []
    for i, (question, context) in enumerate(zip(questions, contexts)):
        q_ids = list(tokenizer(question)["input_ids"])[-max_question_length:]
        enc = tokenizer(context, return_offsets_mapping=True)
        c_ids, c_off = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        room = max_length - len(q_ids) - 1
        if room <= stride:
            raise ValueError(
                f"max_length={max_length} leaves {room} context tokens per window after a "
                f"{len(q_ids)}-token question, not more than stride={stride}; raise max_length "
                "or lower stride / max_question_length"
            )
        span = _answer_span(answers[i], context, i) if answers is not None else None
        null = len(q_ids)  # the SEP token
        start = 0
        while True:
            ids, offs = c_ids[start : start + room], c_off[start : start + room]
            feat = QAFeature(i, q_ids + [sep] + ids, [None] * (null + 1) + list(offs), null)
            if answers is not None:
                feat.start_position = feat.end_position = null
                if span is not None:
                    inside = [t for t, (a, b) in enumerate(offs) if b > span[0] and a < span[1]]
                    if inside and offs[0][0] <= span[0] and offs[-1][1] >= span[1]:
                        feat.start_position = null + 1 + inside[0]
                        feat.end_position = null + 1 + inside[-1]
            features.append(feat)
            if start + room >= len(c_ids):
                break
            start += room - stride
    return features


def collate_qa_features(
    features: Sequence[QAFeature], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Right-pad features into `input_ids`, `attention_mask [N, T]` (and start/end
    positions `[N]` when the features carry answers).

    Example:
        >>> f = QAFeature(0, [5, 6, 7], [None, None, (0, 2)], 1, 1, 1)
        >>> collate_qa_features([f], pad_token_id=0)["attention_mask"].tolist()
        [[1, 1, 1]]
    """
    T = max(len(f.input_ids) for f in features)
    ids = torch.full((len(features), T), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(features), T, dtype=torch.long)
    for r, f in enumerate(features):
        ids[r, : len(f.input_ids)] = torch.tensor(f.input_ids)
        mask[r, : len(f.input_ids)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if all(f.start_position is not None for f in features):
        batch["start_positions"] = torch.tensor([f.start_position for f in features])
        batch["end_positions"] = torch.tensor([f.end_position for f in features])
    return batch


def decode_spans(
    features: Sequence[QAFeature],
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    contexts: Sequence[str],
    *,
    n_best: int = 20,
    max_answer_length: int = MAX_ANSWER_LENGTH,
    allow_no_answer: bool = False,
    null_threshold: float = 0.0,
) -> list[QAPrediction]:
    """Best answer span per example from the model's logits over its features.

    Only context tokens can start or end a span (question, SEP and pad positions are
    excluded here, not in the model's logits); `end >= start` and at most
    `max_answer_length` tokens. With `allow_no_answer` (SQuAD v2), the example is
    unanswerable when its null score exceeds the best span score by more than
    `null_threshold`.

    Args:
        features: as returned by `prepare_qa_features`, in the order of the logits rows.
        start_logits, end_logits: `[N, T]` (T >= every feature's length).
        contexts: the examples' contexts (for the answer text).

    Example:
        >>> f = QAFeature(0, [1, 2, 3, 4], [None, None, (0, 3), (4, 7)], 1)
        >>> p = decode_spans([f], torch.tensor([[0., 0, 5, 1]]), torch.tensor([[0., 0, 1, 5]]), ["Ann Bob"])
        >>> p[0].text, p[0].score
        ('Ann Bob', 10.0)
    """
    by_example: dict[int, list[int]] = {}
    for r, f in enumerate(features):
        by_example.setdefault(f.example_index, []).append(r)
    preds: list[QAPrediction] = []
    for ex in range(len(contexts)):
        context, cands, null_score = contexts[ex], [], float("inf")
        for r in by_example.get(ex, []):
            f, s, e = features[r], start_logits[r].float(), end_logits[r].float()
            null_score = min(null_score, float(s[f.null_index] + e[f.null_index]))
            ctx = torch.tensor(f.context_token_indices, dtype=torch.long)
            if ctx.numel() == 0:
                continue
            top_s = ctx[s[ctx].topk(min(n_best, ctx.numel())).indices].tolist()
            top_e = ctx[e[ctx].topk(min(n_best, ctx.numel())).indices].tolist()
            for a in top_s:
                for b in top_e:
                    if b < a or b - a + 1 > max_answer_length:
                        continue
                    start_char, end_char = f.offsets[a][0], f.offsets[b][1]
                    cands.append(
                        {
                            "text": context[start_char:end_char],
                            "start_char": start_char,
                            "end_char": end_char,
                            "score": float(s[a] + e[b]),
                        }
                    )
        cands.sort(key=lambda c: -c["score"])
        # Overlapping windows propose the same span twice: keep its best score only.
        seen, best = set(), []
        for c in cands:
            if (c["start_char"], c["end_char"]) not in seen:
                seen.add((c["start_char"], c["end_char"]))
                best.append(c)
        best = best[:n_best]
        if null_score == float("inf"):
            null_score = float("-inf")
        top = best[0] if best else None
        if top is None or (allow_no_answer and null_score > top["score"] + null_threshold):
            preds.append(QAPrediction("", -1, -1, null_score, null_score, best))
        else:
            preds.append(
                QAPrediction(
                    top["text"], top["start_char"], top["end_char"], top["score"], null_score, best
                )
            )
    return preds
