"""Feature extraction (`feature-extraction`): hidden states of any model's backbone."""

from __future__ import annotations

from typing import Any

import torch

from .base import Pipeline

POOLINGS = ("mean", "last", "none")


class FeatureExtractionPipeline(Pipeline):
    """Embed texts with the GPT-2 backbone of any checkpoint (any variant).

    Options: `pooling` — `mean` (default: average over the tokens, a text vector), `last`
    (the last token, which has read the whole text), `none` (one vector per token);
    `return_tensors=True` for tensors instead of lists. Texts longer than the context keep
    their start.

    Example:
        >>> embed = FeatureExtractionPipeline()                 # the embedded model
        >>> len(embed("To be, or not to be")) == embed.model.config.n_embd
        True
        >>> embed(["a b", "c"], pooling="none", return_tensors=True)[0].shape[0]
        2
    """

    task = "feature-extraction"
    any_model = True  # (every gpt2kit model has the backbone it reads)
    uses_default_model = True

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, str)

    @torch.inference_mode()
    def _run_batch(self, inputs: list[str], params: dict[str, Any]) -> list[Any]:
        pooling = params.get("pooling", "mean")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        seqs = [self._truncate(self._encode(t) or [self.tokenizer.eos_token_id]) for t in inputs]
        ids, mask = self._pad(seqs)
        backbone = getattr(self.model, "backbone", self.model)
        hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state.float().cpu()
        out = []
        for row, s in zip(hidden, seqs):
            h = row[: len(s)]
            vec = h.mean(0) if pooling == "mean" else h[-1] if pooling == "last" else h
            out.append(vec if params.get("return_tensors") else vec.tolist())
        return out
