"""`GPT2ForDocumentClassification`: one label for a document of any length, via windows."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import GPT2Config
from ..nn.backbone import GPT2Model, as_token_ids
from ..nn.base import ConfigOption, GPT2PreTrainedModel
from ..nn.outputs import DocumentClassifierOutput
from .arguments import pad_token_lists
from .losses import classification_loss
from .pooling import POOLERS, AttentionPooling, pool_max, pool_mean

AGGREGATIONS = ("mean", "max", "attention")


def document_windows(length: int, window_size: int, stride: int) -> list[tuple[int, int]]:
    """`(start, end)` of the windows covering `length` tokens.

    `stride` is the OVERLAP: the number of tokens consecutive windows share (as the
    `stride` of `transformers`' tokenizers), so windows start every `window_size - stride`
    tokens. The last window is aligned to the end of the document, so every window of a
    document longer than `window_size` is full.

    Example:
        >>> document_windows(10, window_size=4, stride=2)
        [(0, 4), (2, 6), (4, 8), (6, 10)]
        >>> document_windows(9, window_size=4, stride=0)
        [(0, 4), (4, 8), (5, 9)]
        >>> document_windows(3, window_size=4, stride=2)
        [(0, 3)]
    """
    if not 0 <= stride < window_size:
        raise ValueError(
            f"stride {stride} must be in [0, window_size={window_size}): it is the overlap between "
            "consecutive windows (0 = no overlap); windows start every window_size - stride tokens"
        )
    if length <= 0:
        raise ValueError("the document is empty; every document needs at least one token")
    if length <= window_size:
        return [(0, length)]
    step = window_size - stride
    starts = list(range(0, length - window_size + 1, step))
    if starts[-1] + window_size < length:
        starts.append(length - window_size)
    return [(s, s + window_size) for s in starts]


class GPT2ForDocumentClassification(GPT2PreTrainedModel):
    """Classify documents of any length: windows, pooled, aggregated, one classifier.

    A document is cut into windows of `window_size` tokens (config, default `n_positions`)
    that overlap by `stride` tokens (config, default `window_size // 2`; see
    `document_windows`). Each window runs through the backbone alone and is pooled
    (`window_pooling`: `last` real token, default, or `mean`); a document's window vectors
    are aggregated (`doc_aggregation`: `mean`, default, `max`, or `attention`, a learned
    softmax over windows at `aggregator`) into one vector, then `score`
    `Linear(d, num_labels, bias=False)` gives the logits.

    Windows run in micro-batches of `window_batch_size` (config or argument, default 16), so
    memory is bounded by one micro-batch, not by the document. In training each micro-batch
    is wrapped in `torch.utils.checkpoint`: only its pooled vectors are kept and its
    activations are recomputed in the backward pass, so the model trains end to end on
    documents of any length in bounded memory.

    `forward` takes `documents` (a list of token-id lists) or `input_ids [B, T]` (+
    `attention_mask`, one document per row); `labels` are per document, loss by
    `problem_type` as in sequence classification.

    Example:
        >>> cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=16,
        ...                  num_labels=2, doc_aggregation="max")
        >>> model = GPT2ForDocumentClassification(cfg).eval()
        >>> model(documents=[list(range(50)), [1, 2, 3]]).logits.shape
        torch.Size([2, 2])
    """

    task = "document-classification"
    # Task options live in the config, so they survive save/load.
    window_size = ConfigOption("window_size", lambda m: m.config.n_positions, int)
    stride = ConfigOption("stride", lambda m: m.window_size // 2, int)
    aggregation = ConfigOption("doc_aggregation", "mean", choices=AGGREGATIONS)
    window_pooling = ConfigOption("window_pooling", "last", choices=("last", "mean"))
    window_batch_size = ConfigOption("window_batch_size", 16, int)

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        if not 1 <= self.window_size <= config.n_positions:
            raise ValueError(
                f"window_size {self.window_size} must be in [1, n_positions={config.n_positions}]"
            )
        document_windows(1, self.window_size, self.stride)  # validates stride
        self.transformer = GPT2Model(config)
        if self.aggregation == "attention":
            self.aggregator = AttentionPooling(config.n_embd)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        documents: Sequence[Sequence[int]] | None = None,
        labels: torch.Tensor | None = None,
        window_batch_size: int | None = None,
    ) -> DocumentClassifierOutput:
        input_ids = as_token_ids(input_ids, self.device)
        if documents is None:
            if input_ids is None:
                raise ValueError("pass documents (lists of token ids) or input_ids [B, T]")
            if input_ids.dim() != 2:
                raise ValueError(
                    f"input_ids must be [batch, tokens], got shape {tuple(input_ids.shape)}"
                )
            if attention_mask is None:
                documents = input_ids.tolist()
            else:
                documents = [row[m.bool()].tolist() for row, m in zip(input_ids, attention_mask)]
        elif input_ids is not None:
            raise ValueError("pass either documents or input_ids, not both")
        windows = self.encode_windows(documents, window_batch_size)  # (W, d) for all documents
        counts = [len(document_windows(len(d), self.window_size, self.stride)) for d in documents]
        pooled, weights = self.aggregate(windows, counts)
        logits = self.score(pooled)
        loss = classification_loss(logits, labels, self.config)
        return DocumentClassifierOutput(loss, logits, pooled, weights)

    def encode_windows(
        self, documents: Sequence[Sequence[int]], window_batch_size: int | None = None
    ) -> torch.Tensor:
        """Pooled vector of every window of every document, `[sum of windows, d]`, in order."""
        if len(documents) == 0:
            raise ValueError("got no documents; pass at least one list of token ids")
        pieces: list[list[int]] = []
        for i, doc in enumerate(documents):
            if len(doc) == 0:
                raise ValueError(f"document {i} is empty; every document needs at least one token")
            doc = list(doc)
            pieces += [
                doc[s:e] for s, e in document_windows(len(doc), self.window_size, self.stride)
            ]
        size = int(window_batch_size or self.window_batch_size)
        # Keep only pooled vectors across micro-batches when gradients flow (recompute the rest).
        recompute = torch.is_grad_enabled() and any(
            p.requires_grad for p in self.transformer.parameters()
        )
        out = []
        for start in range(0, len(pieces), size):
            ids, mask = pad_token_lists(pieces[start : start + size], self.device)
            if recompute:
                out.append(checkpoint(self._pool_window_batch, ids, mask, use_reentrant=False))
            else:
                out.append(self._pool_window_batch(ids, mask))
        return torch.cat(out)

    def _pool_window_batch(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(ids, attention_mask=mask).last_hidden_state  # (w, T, d)
        # A copy, not a view: a view of `hidden` would keep the whole micro-batch's final
        # activations alive until the backward pass, for every micro-batch.
        return POOLERS[self.window_pooling](hidden, mask).clone()

    def aggregate(
        self, windows: torch.Tensor, counts: Sequence[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Window vectors `[W, d]` (document i owns `counts[i]` consecutive rows) -> `[D, d]`."""
        D, Wmax = len(counts), max(counts)
        grid = windows.new_zeros(D, Wmax, windows.shape[-1])
        mask = torch.zeros(D, Wmax, dtype=torch.bool, device=windows.device)
        doc = torch.repeat_interleave(
            torch.arange(D, device=windows.device), torch.tensor(counts, device=windows.device)
        )
        slot = torch.cat([torch.arange(c, device=windows.device) for c in counts])
        grid = grid.index_put((doc, slot), windows)
        mask[doc, slot] = True
        if self.aggregation == "mean":
            return pool_mean(grid, mask), None
        if self.aggregation == "max":
            return pool_max(grid, mask), None
        scores = (
            self.aggregator.query(grid).squeeze(-1).masked_fill(~mask, torch.finfo(grid.dtype).min)
        )
        weights = scores.softmax(-1)
        return (weights[..., None] * grid).sum(1), [weights[i, :c] for i, c in enumerate(counts)]
