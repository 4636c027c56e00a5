"""`GPT2ForTextClassification`: many short texts packed per row, one label (or score) each."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..config import GPT2Config
from ..nn.backbone import GPT2Model
from ..nn.base import ConfigOption, GPT2PreTrainedModel
from ..nn.outputs import TextClassifierOutput
from ..tasks.packing import PackedBatch, pack_texts, pool_spans
from .arguments import BackboneArgs, Unpack, head_forward, pad_token_lists
from .losses import classification_loss
from .pooling import POOLERS


class GPT2ForTextClassification(GPT2PreTrainedModel):
    """Classify short texts, packed: a batch of texts wastes no compute on padding.

    Texts of at most `max_text_length` tokens (config, default 128) are packed into rows of
    `pack_length` tokens (config, default `min(n_positions, 2 * max_text_length)`; longer
    rows only add attention work) with a block-diagonal causal mask and per-text positions,
    so each text's logits equal those of the text run alone. Longer texts (up to
    `n_positions`) fall back to ordinary padded batches. Each text is pooled (`text_pooling`:
    `last` token or `mean`), then `score` `Linear(d, num_labels, bias=False)`: the key of
    `GPT2ForSequenceClassification`, so its checkpoints load here.

    `forward` takes one of:
        - `texts`: a list of token-id lists (packed here);
        - `input_ids [R, L]` + 4-D `attention_mask [R, 1, L, L]` + `position_ids` +
          `text_spans [N, 3]`, as `gpt2kit.tasks.packing.pack_texts` makes them;
        - `input_ids [B, T]` + `attention_mask [B, T]`: one text per row, padded.

    `labels` are per text (`[N]` class ids, `[N]` floats for regression, `[N, num_labels]`
    for multi-label); the loss follows `problem_type` as in sequence classification.

    Example:
        >>> cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, num_labels=3)
        >>> model = GPT2ForTextClassification(cfg).eval()
        >>> model.classify([[5, 6, 7], [8, 9], [10, 11, 12, 13]]).shape
        torch.Size([3, 3])
    """

    task = "text-classification"
    # Task options live in the config, so they survive save/load.
    max_text_length = ConfigOption("max_text_length", lambda m: min(128, m.config.n_positions), int)
    pack_length = ConfigOption(
        "pack_length", lambda m: min(m.config.n_positions, 2 * m.max_text_length), int
    )
    text_pooling = ConfigOption("text_pooling", "last", choices=("last", "mean"))

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        if not 1 <= self.max_text_length <= self.pack_length <= config.n_positions:
            raise ValueError(
                f"need 1 <= max_text_length ({self.max_text_length}) <= pack_length ({self.pack_length}) "
                f"<= n_positions ({config.n_positions}); fix the config"
            )
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)
        self.init_weights()

    def pack(self, texts: Sequence[Sequence[int]]) -> PackedBatch:
        """Pack texts of at most `max_text_length` tokens into rows of `pack_length`."""
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        return pack_texts(texts, self.pack_length, pad_token_id=pad, device=self.device)

    @head_forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        texts: Sequence[Sequence[int]] | None = None,
        text_spans: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **backbone: Unpack[BackboneArgs],
    ) -> TextClassifierOutput:
        if backbone.get("past_key_values") is not None or backbone.get("use_cache"):
            raise ValueError(
                "text classification does not use a KV cache; drop past_key_values/use_cache"
            )
        mask = backbone.get("attention_mask")
        out = None
        if texts is not None:
            if input_ids is not None or backbone.get("inputs_embeds") is not None:
                raise ValueError("pass either texts or input_ids/inputs_embeds, not both")
            pooled = self._pool_texts(texts)
        elif text_spans is not None:
            if mask is None or mask.dim() != 4 or backbone.get("position_ids") is None:
                raise ValueError(
                    "packed input (text_spans) needs the 4-D attention_mask and position_ids of the "
                    "packing; build all four with gpt2kit.tasks.packing.pack_texts"
                )
            out = self.transformer(input_ids, **backbone)
            pooled = pool_spans(out.last_hidden_state, text_spans, self.text_pooling)
        else:
            out = self.transformer(input_ids, **backbone)
            rows = mask if mask is not None and mask.dim() == 2 else None
            pooled = POOLERS[self.text_pooling](out.last_hidden_state, rows)
        logits = self.score(pooled)
        loss = classification_loss(logits, labels, self.config)
        return TextClassifierOutput.from_backbone(
            out, loss=loss, logits=logits, pooled_output=pooled
        )

    def _pool_texts(self, texts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Pooled vector `[N, d]` per text: short ones packed, long ones padded, input order kept."""
        lengths = [len(t) for t in texts]
        for i, n in enumerate(lengths):
            if n == 0:
                raise ValueError(f"text {i} is empty; every text needs at least one token")
            if n > self.config.n_positions:
                raise ValueError(
                    f"text {i} has {n} tokens, more than the model's {self.config.n_positions} positions (n_positions); "
                    "truncate it or use GPT2ForDocumentClassification for long texts"
                )
        short = [i for i, n in enumerate(lengths) if n <= self.max_text_length]
        long = [i for i, n in enumerate(lengths) if n > self.max_text_length]
        parts, order = [], []
        if short:
            packed = self.pack([texts[i] for i in short])
            hidden = self.transformer(
                packed.input_ids,
                attention_mask=packed.attention_mask,
                position_ids=packed.position_ids,
            ).last_hidden_state
            parts.append(pool_spans(hidden, packed.spans, self.text_pooling))
            order += short
        if long:
            # Too long to be worth packing: ordinary right-padded rows.
            ids, mask = pad_token_lists([texts[i] for i in long], self.device)
            hidden = self.transformer(ids, attention_mask=mask).last_hidden_state
            parts.append(POOLERS[self.text_pooling](hidden, mask))
            order += long
        pooled = torch.cat(parts)
        if long and short:
            pooled = pooled[torch.as_tensor(order, device=pooled.device).argsort()]
        return pooled

    @torch.no_grad()
    def classify(self, texts: Sequence[Sequence[int]], batch_tokens: int = 16384) -> torch.Tensor:
        """Logits `[N, num_labels]` for `texts` (token-id lists), in input order.

        Texts are processed in chunks of about `batch_tokens` tokens, so memory stays
        bounded however many texts there are.
        """
        outputs, chunk, size = [], [], 0
        for text in texts:
            chunk.append(text)
            size += len(text)
            if size >= batch_tokens:
                outputs.append(self.score(self._pool_texts(chunk)))
                chunk, size = [], 0
        if chunk:
            outputs.append(self.score(self._pool_texts(chunk)))
        if not outputs:
            raise ValueError("classify got no texts; pass at least one list of token ids")
        return torch.cat(outputs)
