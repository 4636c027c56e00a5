"""`GPT2ForQuestionAnswering`: extractive QA, a start and an end score for every token."""

from __future__ import annotations

import torch
from torch import nn

from ..config import GPT2Config
from ..nn.backbone import GPT2Model
from ..nn.base import GPT2PreTrainedModel
from ..nn.outputs import QuestionAnsweringModelOutput
from .arguments import BackboneArgs, Unpack, head_forward
from .losses import span_loss


class GPT2ForQuestionAnswering(GPT2PreTrainedModel):
    """GPT-2 with `qa_outputs` `Linear(d, 2)`: start and end logits `[B, T]` for every token.

    Put the question before the context (`gpt2kit.tasks.qa.prepare_qa_features`): a causal
    model scores context tokens having read the question. The raw logits are those of
    `transformers` (pads not masked); decoding (`gpt2kit.tasks.qa.decode_spans`) masks
    pads and question tokens.

    Example:
        >>> model = GPT2ForQuestionAnswering(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100)).eval()
        >>> out = model(torch.tensor([[4, 5, 6, 7]]), start_positions=torch.tensor([2]), end_positions=torch.tensor([3]))
        >>> out.start_logits.shape, out.loss.dim()
        (torch.Size([1, 4]), 0)
    """

    task = "question-answering"

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.qa_outputs = nn.Linear(config.n_embd, 2)
        self.init_weights()

    @head_forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        **backbone: Unpack[BackboneArgs],
    ) -> QuestionAnsweringModelOutput:
        """`start_positions`, `end_positions [B]`: token indices of the answer (inclusive)."""
        out = self.transformer(input_ids, **backbone)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(-1)  # (B, T) each
        loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput.from_backbone(
            out, loss=loss, start_logits=start_logits, end_logits=end_logits
        )
