"""`GPT2DoubleHeadsModel`: the LM head and a multiple-choice head on one backbone (GPT-2 paper)."""

from __future__ import annotations

import torch

from ..config import GPT2Config
from ..nn.backbone import GPT2Model, Linear, as_token_ids
from ..nn.base import GPT2PreTrainedModel
from ..nn.outputs import DoubleHeadsModelOutput
from .arguments import BackboneArgs, Unpack, fold_choices, head_forward
from .generation_mixin import GenerationMixin
from .losses import class_cross_entropy, keep_positions, lm_head_outputs, wants_logits
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

    @head_forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        mc_token_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mc_labels: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        return_logits: bool | None = None,
        skip_logits: bool | None = None,
        **backbone: Unpack[BackboneArgs],
    ) -> DoubleHeadsModelOutput:
        input_ids = as_token_ids(input_ids, self.device)
        # [B, C, T] (choices) or [B, T] (plain LM use and generation)
        args, lead = fold_choices({**backbone, "input_ids": input_ids}, choices=None)
        out = self.transformer(**args)
        T = out.last_hidden_state.shape[1]
        hidden = out.last_hidden_state.view(*lead, T, -1)  # (B, C, T, d)
        want = wants_logits(return_logits, skip_logits)
        logits, loss = lm_head_outputs(
            self.lm_head, keep_positions(hidden, logits_to_keep), labels, want
        )
        # The choice score needs the whole row; during cached decoding (a mask longer than
        # the new tokens) there is none, so mc_logits is None there.
        mask = backbone.get("attention_mask")
        mc_logits = None
        if mask is None or mask.shape[-1] == T:
            mc_logits = self.multiple_choice_head(hidden, mc_token_ids, mask).squeeze(-1)
        if mc_labels is not None and (mc_logits is None or mc_logits.dim() < 2):
            raise ValueError("mc_labels need input_ids [batch, choices, tokens] without a cache")
        mc_labels = mc_labels.reshape(-1) if mc_labels is not None else None
        mc_loss = class_cross_entropy(mc_logits, mc_labels, "mc_labels")
        return DoubleHeadsModelOutput.from_backbone(
            out, loss=loss, mc_loss=mc_loss, logits=logits, mc_logits=mc_logits
        )
