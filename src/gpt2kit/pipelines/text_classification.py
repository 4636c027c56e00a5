"""Text classification (`text-classification`) and document classification (`document-classification`)."""

from __future__ import annotations

from typing import Any

import torch

from .base import Pipeline, label_name

FUNCTIONS = ("softmax", "sigmoid", "none")


def _function_for(config: Any, choice: str | None) -> str:
    """Softmax for single-label, sigmoid for multi-label, raw scores for regression."""
    if choice is not None:
        if choice not in FUNCTIONS:
            raise ValueError(
                f"function_to_apply must be one of {', '.join(FUNCTIONS)}, got {choice!r}"
            )
        return choice
    if config.problem_type == "multi_label_classification":
        return "sigmoid"
    if config.problem_type == "regression":
        return "none"
    return "sigmoid" if config.num_labels == 1 else "softmax"


def scores_to_labels(
    logits: torch.Tensor, config: Any, top_k: int | None = 1, function_to_apply: str | None = None
) -> list[Any]:
    """Turn `[B, num_labels]` logits into results.

    `top_k=1` gives one `{"label", "score"}` per row; `top_k=k` the k best as a list;
    `top_k=None` every label, best first.

    Example:
        >>> from gpt2kit import GPT2Config
        >>> cfg = GPT2Config(n_layer=1, n_embd=8, n_head=2, id2label={0: "neg", 1: "pos"})
        >>> scores_to_labels(torch.tensor([[0.0, 2.0]]), cfg)[0]["label"]
        'pos'
    """
    fn = _function_for(config, function_to_apply)
    logits = logits.float()
    probs = (
        logits.softmax(-1) if fn == "softmax" else logits.sigmoid() if fn == "sigmoid" else logits
    )
    results: list[Any] = []
    for row in probs.cpu():
        order = row.argsort(descending=True).tolist()
        ranked = [{"label": label_name(config, j), "score": float(row[j])} for j in order]
        results.append(ranked[0] if top_k == 1 else ranked if top_k is None else ranked[:top_k])
    return results


class TextClassificationPipeline(Pipeline):
    """Label texts or text pairs with a fine-tuned classifier.

    Works with `GPT2ForSequenceClassification` and `GPT2ForTextClassification` (which packs
    short texts into shared rows). Inputs: a string, `{"text": ..., "text_pair": ...}`, or
    a `(text, text_pair)` tuple. Options: `top_k` (1: the best label; k: the k best; None:
    all), `function_to_apply` (`softmax`, `sigmoid`, `none`; by default chosen from the
    config's `problem_type`: single-label softmax, multi-label sigmoid, regression none).
    Texts longer than the model's context keep their start.

    Example:
        >>> import tempfile
        >>> from gpt2kit import GPT2Config
        >>> from gpt2kit.models.sequence_classification import GPT2ForSequenceClassification
        >>> folder = tempfile.mkdtemp()
        >>> cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, id2label={0: "neg", 1: "pos"})
        >>> _ = GPT2ForSequenceClassification(cfg).save_pretrained(folder)
        >>> classify = TextClassificationPipeline(folder)
        >>> classify("a fine play")["label"] in {"neg", "pos"}
        True
        >>> len(classify(["a", "b"], top_k=None)[1])
        2
    """

    task = "text-classification"

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, (str, dict)) or (
            isinstance(inputs, tuple)
            and len(inputs) == 2
            and all(isinstance(x, str) for x in inputs)
        )

    def _token_ids(self, item: Any) -> list[int]:
        if isinstance(item, dict):
            if "text" not in item:
                raise ValueError(
                    f"a text-classification dict input needs 'text' (and optionally 'text_pair'), got {sorted(item)}"
                )
            text, pair = item["text"], item.get("text_pair")
        elif isinstance(item, tuple):
            text, pair = item
        elif isinstance(item, str):
            text, pair = item, None
        else:
            raise TypeError(
                f"text-classification inputs are strings, (text, pair) tuples or dicts, got {type(item).__name__}"
            )
        ids = self.tokenizer(text, pair)["input_ids"] if pair is not None else self._encode(text)
        return ids or [self.tokenizer.eos_token_id]

    def _logits(self, seqs: list[list[int]]) -> torch.Tensor:
        if type(self.model).__name__ == "GPT2ForTextClassification" or hasattr(self.model, "pack"):
            return self.model(texts=[self._truncate(s) for s in seqs]).logits
        ids, mask = self._pad([self._truncate(s) for s in seqs])
        return self.model(input_ids=ids, attention_mask=mask).logits

    @torch.inference_mode()
    def _run_batch(self, inputs: list[Any], params: dict[str, Any]) -> list[Any]:
        logits = self._logits([self._token_ids(x) for x in inputs])
        return scores_to_labels(
            logits, self.model.config, params.get("top_k", 1), params.get("function_to_apply")
        )


class DocumentClassificationPipeline(TextClassificationPipeline):
    """Label documents of any length with `GPT2ForDocumentClassification`.

    The model reads each document in overlapping windows and aggregates them, so nothing is
    cut. Inputs and options are those of `TextClassificationPipeline`.

    Example:
        >>> import tempfile
        >>> from gpt2kit import GPT2Config
        >>> from gpt2kit.models.document_classification import GPT2ForDocumentClassification
        >>> folder = tempfile.mkdtemp()
        >>> cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=32, num_labels=2)
        >>> _ = GPT2ForDocumentClassification(cfg).save_pretrained(folder)
        >>> DocumentClassificationPipeline(folder)("word " * 500)["label"] in {"LABEL_0", "LABEL_1"}
        True
    """

    task = "document-classification"

    def _logits(self, seqs: list[list[int]]) -> torch.Tensor:
        return self.model(documents=seqs).logits
