"""What `generate(..., return_dict_in_generate=True)` returns, and the recorder the loops fill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..nn.outputs import ModelOutput


@dataclass
class GenerateOutput(ModelOutput):
    """What `generate(..., return_dict_in_generate=True)` returns; `transformers`' fields.

    Like `transformers`' `GenerateDecoderOnlyOutput` / `GenerateBeamDecoderOnlyOutput`
    (it indexes as a tuple of its non-None fields, `out[0]` is `sequences`), so code that
    reads `out.sequences`, `out.scores` or `compute_transition_scores`-style math keeps
    working.

    Attributes:
        sequences: `[B * num_return_sequences, T + new]`, the ids `generate` returns otherwise.
        sequences_scores: beam search with `output_scores`: `[B * num_return_sequences]`, each
            returned hypothesis' score (sum of token log-probs / `new_len ** length_penalty`).
        scores: with `output_scores`, one `[N, V]` tensor per step, the scores the token was
            picked from: greedy / sampling the logits after every processor and warper;
            beam search the log-softmax after the processors, before the beam's running
            score is added. N is the number of rows decoded (`B * num_return_sequences`,
            or `B * num_beams`); finished rows keep their (unused) scores.
        logits: with `output_logits`, the raw float32 logits `[N, V]` of every step.
        beam_indices: beam search: `[B * num_return_sequences, new]`, for each new token the
            row (of the `B * num_beams` decoded) it was appended to; -1 after a hypothesis
            ended.
        attentions: with `output_attentions`, per step a tuple over layers of
            `[N, heads, q, k]` (q = the prompt at the first step, 1 after).
        hidden_states: with `output_hidden_states`, per step a tuple of `n_layer + 1`
            tensors `[N, q, n_embd]` (embeddings first, the final norm's output last).
        past_key_values: the `KVCache` after the last step (every token but the last one;
            in beam search, the running beams' rows), as `transformers` returns its cache.

    Example:
        >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
        >>> from gpt2kit.generation import generate
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
        >>> out = generate(model, torch.tensor([[1, 2]]), max_new_tokens=3, eos_token_id=None,
        ...                return_dict_in_generate=True, output_scores=True)
        >>> out.sequences.shape, len(out.scores), out.scores[0].shape
        (torch.Size([1, 5]), 3, torch.Size([1, 50]))
    """

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None
    attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    hidden_states: tuple[tuple[torch.Tensor, ...], ...] | None = None
    past_key_values: Any = None


class Record:
    """What `return_dict_in_generate` asks the decoding loops to keep."""

    def __init__(
        self,
        scores: bool,
        logits: bool,
        attentions: bool = False,
        hidden_states: bool = False,
        past_key_values: bool = False,
    ) -> None:
        self.scores: list[torch.Tensor] | None = [] if scores else None
        self.logits: list[torch.Tensor] | None = [] if logits else None
        self.attentions: list[tuple[torch.Tensor, ...]] | None = [] if attentions else None
        self.hidden_states: list[tuple[torch.Tensor, ...]] | None = [] if hidden_states else None
        self.keep_cache = past_key_values
        self.sequences_scores: torch.Tensor | None = None
        self.beam_indices: torch.Tensor | None = None
        self.past_key_values: Any = None

    @property
    def every_row(self) -> bool:
        """True when something kept is per row of the whole batch (rows must not be dropped)."""
        return (
            self.scores is not None
            or self.logits is not None
            or self.attentions is not None
            or self.hidden_states is not None
            or self.keep_cache
        )

    def model_kwargs(self) -> dict[str, Any]:
        """Extra arguments of every model call: the per-layer outputs to return."""
        out: dict[str, Any] = {}
        if self.attentions is not None:
            out["output_attentions"] = True
        if self.hidden_states is not None:
            out["output_hidden_states"] = True
        return out

    def step(self, out: Any) -> None:
        """Keep a model call's per-layer outputs (one entry per generated token)."""
        if self.attentions is not None:
            self.attentions.append(tuple(out.attentions))
        if self.hidden_states is not None:
            self.hidden_states.append(tuple(out.hidden_states))

    def output(self, sequences: torch.Tensor, cache: Any = None) -> GenerateOutput:
        def tup(x: list | None) -> tuple | None:
            return tuple(x) if x is not None else None

        return GenerateOutput(
            sequences=sequences,
            sequences_scores=self.sequences_scores,
            scores=tup(self.scores),
            logits=tup(self.logits),
            beam_indices=self.beam_indices,
            attentions=tup(self.attentions),
            hidden_states=tup(self.hidden_states),
            past_key_values=(cache if cache is not None else self.past_key_values)
            if self.keep_cache
            else None,
        )
