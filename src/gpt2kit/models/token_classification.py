"""`GPT2ForTokenClassification`: one class per token (NER, POS tagging, chunking)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import GPT2Config
from ..nn.backbone import GPT2Model
from ..nn.base import GPT2PreTrainedModel
from ..nn.outputs import TokenClassifierOutput
from .arguments import BackboneArgs, Unpack, head_forward
from .losses import class_cross_entropy
from .pooling import CLASSIFIER_DROPOUT_OPTIONS, classifier_dropout


class GPT2ForTokenClassification(GPT2PreTrainedModel):
    """GPT-2 with dropout + `classifier` `Linear(d, num_labels)` on every token.

    A causal model tags token t having read tokens <= t only. `labels [B, T]` are class ids,
    `-100` where no loss is wanted (pads, continuation pieces: see
    `gpt2kit.tasks.token_alignment`). Keys and numbers match `transformers`.

    Example:
        >>> cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, num_labels=5)
        >>> model = GPT2ForTokenClassification(cfg).eval()
        >>> out = model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[0, 4, -100]]))
        >>> out.logits.shape, out.loss.dim()
        (torch.Size([1, 3, 5]), 0)
    """

    task = "token-classification"
    config_options = CLASSIFIER_DROPOUT_OPTIONS

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.n_embd, config.num_labels)
        self.init_weights()

    @head_forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        labels: torch.Tensor | None = None,
        **backbone: Unpack[BackboneArgs],
    ) -> TokenClassifierOutput:
        out = self.transformer(input_ids, **backbone)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = class_cross_entropy(logits, labels, "labels")
        return TokenClassifierOutput.from_backbone(out, loss=loss, logits=logits)
