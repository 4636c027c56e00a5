"""Language-model heads: `GPT2LMHeadModel` and `GPT2ForCausalLM` (same weights, plus `score`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..config import GPT2Config
from ..nn.backbone import PLAIN_LM_STEP, GPT2Model, Linear
from ..nn.base import GPT2PreTrainedModel
from ..nn.outputs import CausalLMOutput
from .arguments import BackboneArgs, Unpack, head_forward, pad_token_lists
from .generation_mixin import GenerationMixin
from .losses import keep_positions, lm_head_outputs, wants_logits


class GPT2LMHeadModel(GenerationMixin, GPT2PreTrainedModel):
    """GPT-2 with the language-model head (`lm_head`, tied to `transformer.wte`).

    `forward(input_ids [B, T], ..., labels [B, T])` returns `CausalLMOutput` with
    `logits [B, T, V]` and, given labels, the shifted cross-entropy (`-100` ignored).
    `logits_to_keep=k` computes logits for the last k positions only (generation needs 1).
    As in `transformers`, the logits are always returned, in training too. Opt-in
    `return_logits=False` (or Liger's `skip_logits=True`) computes the loss chunk by chunk
    without ever building the `[B, T, V]` logits (`logits=None`): gpt2kit's Trainer does so
    for its training steps.

    Example:
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100))
        >>> ids = torch.tensor([[5, 6, 7]])
        >>> out = model(ids, labels=ids)
        >>> out.logits.shape, out.loss.dim()
        (torch.Size([1, 3, 100]), 0)
    """

    task = "text-generation"

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.init_weights()

    @head_forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        labels: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        return_logits: bool | None = None,
        skip_logits: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **backbone: Unpack[BackboneArgs],
    ) -> CausalLMOutput:
        """`labels [B, T]` unshifted (`-100` ignored); `logits_to_keep` the last k positions
        (or a tensor of positions); `return_logits=False` / `skip_logits=True`: the loss
        without the `[B, T, V]` logits (chunked); `num_items_in_batch`: divide the summed
        loss by it (`transformers.Trainer` passes it); the rest is `BackboneArgs`."""
        out = self.transformer(input_ids, **backbone)
        hidden = keep_positions(out.last_hidden_state, logits_to_keep)
        want = wants_logits(return_logits, skip_logits)
        logits, loss = lm_head_outputs(self.lm_head, hidden, labels, want, num_items_in_batch)
        return CausalLMOutput.from_backbone(out, loss=loss, logits=logits)


# `gpt2kit.decode` may run this exact forward as one native call per batch-1 step.
setattr(GPT2LMHeadModel.forward, PLAIN_LM_STEP, True)


@dataclass
class ScoreOutput:
    """Log-likelihood of each text under the model.

    `token_logprobs[i]` holds log p(token_j | tokens < j) for every scored token of text i;
    `total_logprob[i]` their sum; `perplexity[i] = exp(-total / n_tokens)`.
    """

    token_logprobs: list[torch.Tensor]
    total_logprob: torch.Tensor
    num_tokens: torch.Tensor
    perplexity: torch.Tensor


class GPT2ForCausalLM(GPT2LMHeadModel):
    """`GPT2LMHeadModel` with `score`: per-token and total log-likelihood and perplexity.

    Same weights and checkpoint keys as `GPT2LMHeadModel`; saved with `architectures:
    ["GPT2LMHeadModel"]` so other engines load it as that class.

    Example:
        >>> cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, bos_token_id=0)
        >>> s = GPT2ForCausalLM(cfg).eval().score([[3, 4, 5], [6, 7]])
        >>> [t.shape[0] for t in s.token_logprobs]      # first token conditioned on BOS
        [3, 2]
    """

    hf_architecture = "GPT2LMHeadModel"

    @torch.no_grad()
    def score(
        self,
        texts: list[str] | list[list[int]] | str,
        tokenizer: Any = None,
        *,
        add_bos: bool = True,
        batch_size: int = 16,
    ) -> ScoreOutput:
        """Log-likelihood of each text (strings need `tokenizer`; lists of ids need nothing).

        With `add_bos` (default) every text is preceded by `<|endoftext|>` (GPT-2's BOS) so
        its first token is scored too, as the GPT-2 paper evaluated. Rows are padded
        internally; padding never changes a text's score.
        """
        if isinstance(texts, str):
            texts = [texts]
        seqs: list[list[int]] = []
        for text in texts:
            if isinstance(text, str):
                if tokenizer is None:
                    raise ValueError(
                        "score() got strings but no tokenizer; pass tokenizer=GPT2Tokenizer..."
                    )
                seqs.append(tokenizer.encode(text))
            else:
                seqs.append([int(t) for t in text])
        bos = (
            self.config.bos_token_id
            if self.config.bos_token_id is not None
            else self.config.eos_token_id
        )
        if add_bos:
            if bos is None:
                raise ValueError(
                    "add_bos=True needs config.bos_token_id; set it or pass add_bos=False"
                )
            seqs = [[bos, *s] for s in seqs]
        for i, s in enumerate(seqs):
            if len(s) < 2:
                raise ValueError(f"text {i} has no token to score (empty text with add_bos=False)")
            if len(s) > self.config.n_positions:
                raise ValueError(
                    f"text {i} has {len(s)} tokens, more than the model's {self.config.n_positions} positions"
                )
        token_logprobs: list[torch.Tensor] = []
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start : start + batch_size]
            ids, mask = pad_token_lists(chunk, self.device)
            logits = self(ids, attention_mask=mask).logits.float()
            logp = F.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            token_logprobs += [logp[r, : len(s) - 1].cpu() for r, s in enumerate(chunk)]
        total = torch.stack([t.sum() for t in token_logprobs])
        n = torch.tensor([t.numel() for t in token_logprobs])
        return ScoreOutput(token_logprobs, total, n, torch.exp(-total / n))
