"""`GPT2ForSequenceClassification`: one label (or score) per sequence, read at its last token."""

from __future__ import annotations

import torch
from torch import nn

from ..config import GPT2Config
from ..nn.backbone import GPT2Model, as_token_ids
from ..nn.base import GPT2PreTrainedModel
from ..nn.outputs import SequenceClassifierOutput
from .arguments import BackboneArgs, Unpack, head_forward
from .losses import classification_loss
from .pooling import gather_index, last_token


class GPT2ForSequenceClassification(GPT2PreTrainedModel):
    """GPT-2 with `score` `Linear(d, num_labels, bias=False)` at each sequence's last real token.

    The last real token is found from `attention_mask`, so left or right padding and a pad
    id equal to EOS all pool the right token (`transformers` looks for the rightmost non-pad
    *id*, which picks a pad on left-padded rows when pad = EOS). Without a mask, its
    `pad_token_id` rule applies. `labels`: `[B]` class ids, `[B]`/`[B, num_labels]` floats
    for regression, `[B, num_labels]` 0/1 for multi-label (`config.problem_type`).

    Example:
        >>> cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, num_labels=3)
        >>> model = GPT2ForSequenceClassification(cfg).eval()
        >>> ids, mask = torch.tensor([[5, 6, 7], [8, 9, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]])
        >>> model(ids, attention_mask=mask, labels=torch.tensor([2, 0])).logits.shape
        torch.Size([2, 3])
    """

    task = "sequence-classification"

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)
        self.init_weights()

    @head_forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        labels: torch.Tensor | None = None,
        **backbone: Unpack[BackboneArgs],
    ) -> SequenceClassifierOutput:
        input_ids = as_token_ids(input_ids, self.device)  # (the pooling reads them too)
        out = self.transformer(input_ids, **backbone)
        hidden = out.last_hidden_state  # (B, T, d)
        last = last_token(self.config, input_ids, backbone.get("attention_mask"), *hidden.shape[:2])
        logits = self.score(gather_index(hidden, last.to(hidden.device)))
        loss = classification_loss(logits, labels, self.config)
        return SequenceClassifierOutput.from_backbone(out, loss=loss, logits=logits)
