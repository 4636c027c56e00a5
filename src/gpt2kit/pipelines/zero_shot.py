"""Zero-shot tasks with a language model and no training, as the GPT-2 paper evaluated:
`zero-shot-classification` (which label's hypothesis is most likely after the text) and
`zero-shot-choice` (which continuation is most likely after a context).

Each candidate is scored by its log-likelihood under the LM, conditioned on the text:
log p(candidate | text) = the sum of its tokens' log-probabilities
(`GPT2ForCausalLM.score`). Longer candidates collect more negative terms, so by default
the score is the mean per token (`length_normalization="token"`); `"none"` keeps the sum.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..models.lm import GPT2ForCausalLM
from .base import Pipeline
from .multiple_choice import choice_result

NORMALIZATIONS = ("token", "none")
DEFAULT_TEMPLATE = "This text is about {}."


def _joined(
    context_ids: list[int], continuation: str, encode: Any, context: str
) -> tuple[list[int], int]:
    """Context ids + continuation ids (with a separating space unless one is there); and the
    number of continuation tokens."""
    sep = "" if not context or context[-1].isspace() or continuation[:1].isspace() else " "
    cont = list(encode(sep + continuation))
    if not cont:
        raise ValueError("a candidate encodes to no tokens; every label/choice needs some text")
    return context_ids + cont, len(cont)


class _LMScorer(Pipeline):
    load_as = {"GPT2LMHeadModel": "GPT2ForCausalLM"}
    uses_default_model = True

    def _candidate_scores(
        self, context: str, candidates: list[str], normalization: str
    ) -> list[float]:
        """Log-likelihood of each candidate after `context` (mean per token or sum)."""
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"length_normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}"
            )
        ctx = self._encode(context)
        rows, lengths = zip(*(_joined(ctx, c, self._encode, context) for c in candidates))
        n = self.model.config.n_positions - 1  # BOS takes one position
        rows = [r[-n:] for r in rows]
        # `score` lives on GPT2ForCausalLM; any LM-head model has the weights it needs.
        out = GPT2ForCausalLM.score(self.model, list(rows), batch_size=self.batch_size)
        scores = []
        for logp, k in zip(out.token_logprobs, lengths):
            tail = logp[-k:]
            scores.append(float(tail.mean() if normalization == "token" else tail.sum()))
        return scores


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


class ZeroShotClassificationPipeline(_LMScorer):
    """Classify texts into labels named at call time, with a plain language model.

    For each label the hypothesis `hypothesis_template.format(label)` (default
    `"This text is about {}."`; `{label}` works too) is scored after the text. Options:
    `candidate_labels` (required), `hypothesis_template`, `length_normalization`
    (`token`, default, or `none`), `multi_label` (each label's probability on its own,
    sigmoid of its score minus the mean of the others', instead of a softmax over labels).

    Returns `{"sequence", "labels", "scores", "logprobs"}`, labels best first, as
    `transformers`' zero-shot pipeline.

    Example:
        >>> classify = ZeroShotClassificationPipeline()          # the embedded model
        >>> out = classify("To be, or not to be", candidate_labels=["death", "cooking"])
        >>> sorted(out["labels"]), round(sum(out["scores"]), 4)
        (['cooking', 'death'], 1.0)
    """

    task = "zero-shot-classification"

    def __call__(self, inputs: Any, candidate_labels: Any = None, **options: Any) -> Any:
        if candidate_labels is not None:
            options["candidate_labels"] = candidate_labels
        return super().__call__(inputs, **options)

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, str)

    @torch.inference_mode()
    def _run_batch(self, inputs: list[str], params: dict[str, Any]) -> list[Any]:
        labels = params.get("candidate_labels")
        if isinstance(labels, str):
            labels = [s.strip() for s in labels.split(",") if s.strip()]
        if not labels:
            raise ValueError("zero-shot-classification needs candidate_labels=[...]")
        template = params.get("hypothesis_template", DEFAULT_TEMPLATE)
        if "{}" not in template and "{label}" not in template:
            raise ValueError(
                f"hypothesis_template must contain {{}} or {{label}}, got {template!r}"
            )
        hypotheses = [template.replace("{label}", "{}").format(label) for label in labels]
        results = []
        for text in inputs:
            logp = self._candidate_scores(
                text, hypotheses, params.get("length_normalization", "token")
            )
            if params.get("multi_label"):
                probs = [
                    1 / (1 + math.exp(-(s - sum(logp[:i] + logp[i + 1 :]) / max(1, len(logp) - 1))))
                    for i, s in enumerate(logp)
                ]
            else:
                probs = _softmax(logp)
            order = sorted(range(len(labels)), key=lambda i: -logp[i])
            results.append(
                {
                    "sequence": text,
                    "labels": [labels[i] for i in order],
                    "scores": [probs[i] for i in order],
                    "logprobs": [logp[i] for i in order],
                }
            )
        return results


class ZeroShotChoicePipeline(_LMScorer):
    """Pick the most likely continuation of a context, with a plain language model.

    Call as `choose(context, choices)` or with `{"context": ..., "choices": [...]}` dicts.
    Options: `length_normalization` (`token`, default, or `none`).

    Returns `{"choice", "text", "scores", "logprobs"}` like the `multiple-choice` pipeline;
    `scores` is the softmax of the (normalized) log-likelihoods.

    Example:
        >>> choose = ZeroShotChoicePipeline()
        >>> out = choose("ROMEO:\\nI", ["will", "xylophone"])
        >>> out["text"] in ("will", "xylophone"), len(out["scores"])
        (True, 2)
    """

    task = "zero-shot-choice"

    def __call__(self, inputs: Any, choices: list[str] | None = None, **options: Any) -> Any:
        if choices is not None:
            inputs = {"context": inputs, "choices": list(choices)}
        return super().__call__(inputs, **options)

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, dict)

    @torch.inference_mode()
    def _run_batch(self, inputs: list[Any], params: dict[str, Any]) -> list[Any]:
        results = []
        for item in inputs:
            if not isinstance(item, dict) or not item.get("choices"):
                raise ValueError(
                    "zero-shot-choice inputs are {'context': ..., 'choices': [...]} dicts"
                )
            context = item.get("context", item.get("question", item.get("prompt", "")))
            choices = [str(c) for c in item["choices"]]
            logp = self._candidate_scores(
                context, choices, params.get("length_normalization", "token")
            )
            results.append(choice_result(choices, _softmax(logp), logprobs=logp))
        return results
