"""Extractive question answering (`question-answering`) with `GPT2ForQuestionAnswering`."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..tasks.qa import (
    MAX_ANSWER_LENGTH,
    collate_qa_features,
    decode_spans,
    prepare_qa_features,
)
from .base import Pipeline


class QuestionAnsweringPipeline(Pipeline):
    """Find the answer to a question as a span of a context.

    Call as `qa(question=..., context=...)` (strings or equal-length lists), or with
    `{"question": ..., "context": ...}` dicts. The question is read first, then the context
    in windows of `max_seq_len` tokens overlapping by `doc_stride` (`gpt2kit.tasks.qa`), so
    contexts of any length work. Options: `top_k` (answers per question), `max_answer_len`
    (tokens; default `tasks.qa.MAX_ANSWER_LENGTH`, 30, the same as `gpt2kit evaluate`, where
    transformers' pipeline uses 15), `handle_impossible_answer` (allow "" when the model's no-answer score wins,
    SQuAD v2), `max_seq_len`, `doc_stride`, `max_question_len`.

    Each answer is `{"answer", "start", "end", "score"}`: `context[start:end] == answer`, and
    `score` is the span's probability among the candidates and the no-answer option.

    Example:
        >>> import tempfile
        >>> from gpt2kit import GPT2Config
        >>> from gpt2kit.models.question_answering import GPT2ForQuestionAnswering
        >>> folder = tempfile.mkdtemp()
        >>> _ = GPT2ForQuestionAnswering(GPT2Config(n_layer=1, n_embd=16, n_head=2)).save_pretrained(folder)
        >>> qa = QuestionAnsweringPipeline(folder)
        >>> a = qa(question="Who met Bob?", context="Ann met Bob in Paris.")
        >>> "Ann met Bob in Paris."[a["start"]:a["end"]] == a["answer"]
        True
    """

    task = "question-answering"

    def __call__(
        self, inputs: Any = None, *, question: Any = None, context: Any = None, **options: Any
    ) -> Any:
        if inputs is None:
            if question is None or context is None:
                raise ValueError("question-answering needs question= and context= (or dict inputs)")
            if isinstance(question, str) and isinstance(context, str):
                inputs = {"question": question, "context": context}
            else:
                questions = (
                    [question] * len(context) if isinstance(question, str) else list(question)
                )
                contexts = [context] * len(questions) if isinstance(context, str) else list(context)
                if len(questions) != len(contexts):
                    raise ValueError(
                        f"got {len(questions)} questions and {len(contexts)} contexts; pass one each"
                    )
                inputs = [{"question": q, "context": c} for q, c in zip(questions, contexts)]
        return super().__call__(inputs, **options)

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, dict)

    @torch.inference_mode()
    def _run_batch(self, inputs: list[Any], params: dict[str, Any]) -> list[Any]:
        for item in inputs:
            if not isinstance(item, dict) or "question" not in item or "context" not in item:
                raise ValueError(
                    "question-answering inputs are {'question': ..., 'context': ...} dicts"
                )
        questions = [item["question"] for item in inputs]
        contexts = [item["context"] for item in inputs]
        max_len = int(params.get("max_seq_len", min(384, self.model.config.n_positions)))
        features = prepare_qa_features(
            self.tokenizer,
            questions,
            contexts,
            max_length=max_len,
            stride=int(params.get("doc_stride", min(128, max_len // 4))),
            max_question_length=int(params.get("max_question_len", min(64, max_len // 4))),
        )
        starts, ends = [], []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for i in range(0, len(features), self.batch_size):
            batch = collate_qa_features(features[i : i + self.batch_size], pad)
            out = self.model(
                input_ids=batch["input_ids"].to(self.device),
                attention_mask=batch["attention_mask"].to(self.device),
            )
            starts += list(out.start_logits.float().cpu())
            ends += list(out.end_logits.float().cpu())
        T = max(s.shape[0] for s in starts)
        start_logits = torch.stack(
            [torch.nn.functional.pad(s, (0, T - s.shape[0]), value=-1e4) for s in starts]
        )
        end_logits = torch.stack(
            [torch.nn.functional.pad(e, (0, T - e.shape[0]), value=-1e4) for e in ends]
        )
        top_k = int(params.get("top_k", 1))
        allow_none = bool(params.get("handle_impossible_answer", False))
        preds = decode_spans(
            features,
            start_logits,
            end_logits,
            contexts,
            n_best=max(20, top_k),
            max_answer_length=int(params.get("max_answer_len", MAX_ANSWER_LENGTH)),
            allow_no_answer=allow_none,
        )
        results = []
        for pred in preds:
            scores = [c["score"] for c in pred.n_best] + ([pred.null_score] if allow_none else [])
            norm = (
                max(scores) + math.log(sum(math.exp(s - max(scores)) for s in scores))
                if scores
                else 0.0
            )
            answers = [
                {
                    "answer": c["text"],
                    "start": c["start_char"],
                    "end": c["end_char"],
                    "score": math.exp(c["score"] - norm),
                }
                for c in pred.n_best
            ]
            if allow_none:
                answers.append(
                    {"answer": "", "start": 0, "end": 0, "score": math.exp(pred.null_score - norm)}
                )
                answers.sort(key=lambda a: -a["score"])
            answers = answers[:top_k] or [{"answer": "", "start": 0, "end": 0, "score": 0.0}]
            results.append(answers[0] if top_k == 1 else answers)
        return results
