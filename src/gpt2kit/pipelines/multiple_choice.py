"""Multiple choice (`multiple-choice`): pick among candidate continuations with a trained head."""

from __future__ import annotations

from typing import Any

import torch

from ..tasks.multiple_choice import MultipleChoiceCollator
from .base import Pipeline


def choice_result(choices: list[str], probs: list[float], **extra: Any) -> dict[str, Any]:
    """`{"choice": best index, "text": best choice, "scores": per-choice probabilities}`."""
    best = max(range(len(probs)), key=probs.__getitem__)
    return {"choice": best, "text": choices[best], "scores": probs, **extra}


class MultipleChoicePipeline(Pipeline):
    """Score each choice of a question with `GPT2ForMultipleChoice` or `GPT2DoubleHeadsModel`.

    Call as `choose(context, choices)` or with `{"context": ..., "choices": [...]}` dicts
    (`question` or `prompt` are accepted for `context`). Every choice is read after the
    context (`gpt2kit.tasks.multiple_choice.MultipleChoiceCollator`) and scored at its last
    token; the scores are softmaxed over the choices.

    Returns `{"choice": index, "text": choice, "scores": [probability per choice]}`.

    Example:
        >>> import tempfile
        >>> from gpt2kit import GPT2Config
        >>> from gpt2kit.models.multiple_choice import GPT2ForMultipleChoice
        >>> folder = tempfile.mkdtemp()
        >>> _ = GPT2ForMultipleChoice(GPT2Config(n_layer=1, n_embd=16, n_head=2)).save_pretrained(folder)
        >>> out = MultipleChoicePipeline(folder)("The sky is", ["blue", "green"])
        >>> round(sum(out["scores"]), 4), out["text"] in ("blue", "green")
        (1.0, True)
    """

    task = "multiple-choice"

    def __call__(self, inputs: Any, choices: list[str] | None = None, **options: Any) -> Any:
        if choices is not None:
            if not isinstance(inputs, str):
                raise ValueError("with choices=..., pass one context string")
            inputs = {"context": inputs, "choices": list(choices)}
        return super().__call__(inputs, **options)

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, dict)

    @staticmethod
    def _example(item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or "choices" not in item:
            raise ValueError("multiple-choice inputs are {'context': ..., 'choices': [...]} dicts")
        context = item.get("context", item.get("question", item.get("prompt", "")))
        if len(item["choices"]) < 1:
            raise ValueError("a multiple-choice input needs at least one choice")
        return {"context": context, "choices": [str(c) for c in item["choices"]]}

    def _choice_logits(self, examples: list[dict[str, Any]]) -> torch.Tensor:
        collate = MultipleChoiceCollator(self.tokenizer, max_length=self.model.config.n_positions)
        batch = {k: v.to(self.device) for k, v in collate(examples).items()}
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            mc_token_ids=batch.get("mc_token_ids"),
        )
        return out.mc_logits if hasattr(out, "mc_logits") else out.logits

    @torch.inference_mode()
    def _run_batch(self, inputs: list[Any], params: dict[str, Any]) -> list[Any]:
        examples = [self._example(x) for x in inputs]
        if len({len(ex["choices"]) for ex in examples}) == 1:
            logits = list(self._choice_logits(examples))
        else:  # the collator batches examples with equal numbers of choices only
            logits = [self._choice_logits([ex])[0] for ex in examples]
        return [
            choice_result(ex["choices"], row.float().softmax(-1).tolist())
            for ex, row in zip(examples, logits)
        ]
