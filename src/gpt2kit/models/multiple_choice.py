"""`GPT2ForMultipleChoice`: score C candidate continuations of a context, pick one."""

from __future__ import annotations

import torch
from torch import nn

from ..config import GPT2Config
from ..nn.backbone import GPT2Model
from ..nn.base import GPT2PreTrainedModel
from ..nn.outputs import MultipleChoiceModelOutput
from .arguments import BackboneArgs, Unpack, fold_choices, head_forward
from .losses import class_cross_entropy
from .pooling import CLASSIFIER_DROPOUT_OPTIONS, classifier_dropout, pool_at


class GPT2ForMultipleChoice(GPT2PreTrainedModel):
    """GPT-2 scoring each choice at its last real token with `choice_head` `Linear(d, 1)`.

    Each row `input_ids[b, c]` is context + choice c; the model reads it left to right, so
    the last real token (or `mc_token_ids[b, c]`) has seen the whole pair. Logits are
    `[B, C]`; `probabilities` their softmax over choices; `labels [B]` the right choice.
    Not in `transformers`: the head key is `choice_head.weight`/`.bias`.

    Example:
        >>> model = GPT2ForMultipleChoice(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100)).eval()
        >>> ids = torch.randint(0, 100, (2, 4, 7))     # 2 questions, 4 choices, 7 tokens
        >>> out = model(ids, labels=torch.tensor([1, 3]))
        >>> out.logits.shape, round(float(out.probabilities.detach().sum(-1)[0]), 4)
        (torch.Size([2, 4]), 1.0)
    """

    task = "multiple-choice"
    config_options = CLASSIFIER_DROPOUT_OPTIONS

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.dropout = classifier_dropout(config)
        self.choice_head = nn.Linear(config.n_embd, 1)
        self.init_weights()

    @head_forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        mc_token_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **backbone: Unpack[BackboneArgs],
    ) -> MultipleChoiceModelOutput:
        """`input_ids`/`attention_mask [B, C, T]` (or `inputs_embeds [B, C, T, d]`),
        `mc_token_ids [B, C]` (default: last real token), `labels [B]`."""
        args, lead = fold_choices({**backbone, "input_ids": input_ids})
        out = self.transformer(**args)
        hidden = out.last_hidden_state.view(*lead, *out.last_hidden_state.shape[1:])  # (B, C, T, d)
        pooled = pool_at(hidden, mc_token_ids, backbone.get("attention_mask"))  # (B, C, d)
        logits = self.choice_head(self.dropout(pooled)).squeeze(-1)  # (B, C)
        labels = labels.reshape(-1) if labels is not None else None  # ([B] or [B, 1])
        loss = class_cross_entropy(logits, labels, "labels (the right choice)")
        return MultipleChoiceModelOutput.from_backbone(
            out, loss=loss, logits=logits, probabilities=logits.softmax(-1)
        )
