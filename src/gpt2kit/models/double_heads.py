"""`GPT2DoubleHeadsModel`: the LM head and a multiple-choice head on one backbone (GPT-2 paper)."""

from __future__ import annotations

from typing import Any

import torch

from ..config import GPT2Config
from .backbone import GPT2Model, Linear
from .base import GPT2PreTrainedModel
from .lm import GenerationMixin
from .losses import class_cross_entropy, lm_head_outputs
from .outputs import DoubleHeadsModelOutput
from .pooling import SequenceSummary


class GPT2DoubleHeadsModel(GenerationMixin, GPT2PreTrainedModel):
    """GPT-2 with `lm_head` (tied) and `multiple_choice_head` (a `SequenceSummary`).

    Input `[B, C, T]` (C choices; every row is also LM-trained with `labels [B, C, T]`) or
    `[B, T]` for plain LM use and generation (`logits_to_keep`). `mc_logits [B, C]` are read
    at `mc_token_ids [B, C]`, by default each row's last real token from `attention_mask`
    (`transformers` takes the last position, the same when rows are not padded).
    `mc_labels [B]` is the right choice. As in `transformers`, `config.num_labels` is set to
    1 so the summary projects to one score per choice.

    Example:
        >>> model = GPT2DoubleHeadsModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100)).eval()
        >>> ids = torch.randint(0, 100, (2, 3, 6))
        >>> out = model(ids, labels=ids, mc_labels=torch.tensor([0, 2]))
        >>> out.logits.shape, out.mc_logits.shape
        (torch.Size([2, 3, 6, 100]), torch.Size([2, 3]))
    """

    task = "double-heads"

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        config.num_labels = 1
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.multiple_choice_head = SequenceSummary(config)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        mc_token_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mc_labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int = 0,
        return_logits: bool | None = None,
    ) -> DoubleHeadsModelOutput:
        ref = input_ids if input_ids is not None else inputs_embeds
        if ref is None:
            raise ValueError(
                "pass input_ids ([batch, choices, tokens] or [batch, tokens]) or inputs_embeds"
            )
        lead = ref.shape[:-1] if input_ids is not None else ref.shape[:-2]  # (B, C) or (B,)
        T = ref.shape[len(lead)]

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.reshape(-1, *t.shape[len(lead) :])

        out = self.transformer(
            flat(input_ids),
            past_key_values=past_key_values,
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            position_ids=flat(position_ids),
            inputs_embeds=flat(inputs_embeds),
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden = out.last_hidden_state.view(*lead, T, -1)  # (B, C, T, d)
        logits, loss = lm_head_outputs(
            self.lm_head,
            hidden[..., -logits_to_keep:, :] if logits_to_keep else hidden,
            labels,
            return_logits,
        )
        # The choice score needs the whole row; during cached decoding (a mask longer than
        # the new tokens) there is none, so mc_logits is None there.
        mc_logits = None
        if attention_mask is None or attention_mask.shape[-1] == T:
            mc_logits = self.multiple_choice_head(hidden, mc_token_ids, attention_mask).squeeze(-1)
        mc_loss = None
        if mc_labels is not None:
            if mc_logits is None or mc_logits.dim() < 2:
                raise ValueError(
                    "mc_labels need input_ids [batch, choices, tokens] without a cache"
                )
            mc_loss = class_cross_entropy(mc_logits, mc_labels.reshape(-1), "mc_labels")
        return DoubleHeadsModelOutput(
            loss, mc_loss, logits, mc_logits, out.past_key_values, out.hidden_states, out.attentions
        )
