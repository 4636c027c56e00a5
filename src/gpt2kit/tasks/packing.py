"""Pack many short texts into a few rows, so a batch of short texts wastes no compute on pads.

Each row holds several texts back to back. A block-diagonal causal mask keeps every text
blind to its neighbours and position ids restart at 0 for each text, so each text's hidden
states are those of the text run alone (up to float rounding). `spans[i] = (row, start, end)`
says where text i landed, so pooling can gather one vector per text in the input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

PACKING_STRATEGIES = ("first_fit_decreasing", "sequential")


@dataclass
class PackedBatch:
    """Texts packed into rows.

    Attributes:
        input_ids: `[R, L]` token ids; pads (after the last text of a row) hold `pad_token_id`.
        attention_mask: `[R, 1, L, L]` bool, True = may attend: causal within a text, nothing
            across texts. Pad slots attend to earlier pad slots only (their output is unused).
        position_ids: `[R, L]`, restarting at 0 at the start of every text; 0 on pads.
        spans: `[N, 3]` long, `(row, start, end)` of text i (end exclusive), in input order.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    spans: torch.Tensor

    @property
    def num_texts(self) -> int:
        return self.spans.shape[0]

    def to(self, device: torch.device | str) -> PackedBatch:
        return PackedBatch(
            *(
                t.to(device)
                for t in (self.input_ids, self.attention_mask, self.position_ids, self.spans)
            )
        )

    def rows(self, start: int, end: int) -> tuple[PackedBatch, torch.Tensor]:
        """Rows `[start, end)` as their own batch, and the indices of the texts they hold."""
        keep = (self.spans[:, 0] >= start) & (self.spans[:, 0] < end)
        index = keep.nonzero().squeeze(-1)
        spans = self.spans[index].clone()
        spans[:, 0] -= start
        sub = PackedBatch(
            self.input_ids[start:end],
            self.attention_mask[start:end],
            self.position_ids[start:end],
            spans,
        )
        return sub, index


def assign_rows(
    lengths: Sequence[int], max_length: int, strategy: str = "first_fit_decreasing"
) -> list[list[int]]:
    """Group text indices into rows of at most `max_length` tokens.

    `first_fit_decreasing` places the longest texts first, each in the first row with room
    (rows end up ~full); `sequential` fills one row at a time in the given order.

    Example:
        >>> assign_rows([3, 5, 2, 4], max_length=7)
        [[1, 2], [3, 0]]
        >>> assign_rows([3, 5, 2, 4], max_length=7, strategy="sequential")
        [[0], [1, 2], [3]]
    """
    if strategy not in PACKING_STRATEGIES:
        raise ValueError(
            f"packing strategy {strategy!r} is unknown; use one of {', '.join(PACKING_STRATEGIES)}"
        )
    for i, n in enumerate(lengths):
        if n > max_length:
            raise ValueError(
                f"text {i} has {n} tokens, more than the row length {max_length}; shorten it"
            )
    rows: list[list[int]] = []
    if strategy == "sequential":
        used = max_length + 1
        for i, n in enumerate(lengths):
            if used + n > max_length:
                rows.append([])
                used = 0
            rows[-1].append(i)
            used += n
        return rows
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep input order
    room = np.empty(0, dtype=np.int64)  # free tokens per row; numpy finds the first fit fast
    for i in order:
        n = lengths[i]
        fits = np.flatnonzero(room >= n)
        if fits.size:
            r = int(fits[0])
        else:
            r = len(rows)
            rows.append([])
            room = np.append(room, max_length)
        rows[r].append(i)
        room[r] -= n
    return rows


def pack_texts(
    texts: Sequence[Sequence[int]],
    max_length: int,
    pad_token_id: int = 0,
    strategy: str = "first_fit_decreasing",
    device: torch.device | str | None = None,
) -> PackedBatch:
    """Pack `texts` (lists of token ids) into rows of at most `max_length` tokens.

    Rows are as long as the fullest row (not necessarily `max_length`).

    Example:
        >>> batch = pack_texts([[5, 6, 7], [8, 9]], max_length=8)
        >>> batch.input_ids.tolist(), batch.position_ids.tolist(), batch.spans.tolist()
        ([[5, 6, 7, 8, 9]], [[0, 1, 2, 0, 1]], [[0, 0, 3], [0, 3, 5]])
        >>> batch.attention_mask[0, 0, 3].tolist()   # text 2's first token sees only itself
        [False, False, False, True, False]
    """
    if len(texts) == 0:
        raise ValueError("pack_texts got no texts; pass at least one list of token ids")
    lengths = [len(t) for t in texts]
    empty = [i for i, n in enumerate(lengths) if n == 0]
    if empty:
        raise ValueError(f"texts {empty[:5]} are empty; every text needs at least one token")
    rows = assign_rows(lengths, max_length, strategy)
    L = max(sum(lengths[i] for i in row) for row in rows)
    R = len(rows)
    ids = np.full((R, L), pad_token_id, dtype=np.int64)
    pos = np.zeros((R, L), dtype=np.int64)
    seg = np.full((R, L), -1, dtype=np.int64)  # text index per slot, -1 = pad
    spans = np.zeros((len(texts), 3), dtype=np.int64)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            n = lengths[i]
            ids[r, start : start + n] = texts[i]
            pos[r, start : start + n] = np.arange(n)
            seg[r, start : start + n] = i
            spans[i] = (r, start, start + n)
            start += n
    seg_t = torch.from_numpy(seg)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    mask = (seg_t[:, :, None] == seg_t[:, None, :]) & causal  # (R, L, L)
    out = PackedBatch(
        torch.from_numpy(ids), mask[:, None], torch.from_numpy(pos), torch.from_numpy(spans)
    )
    return out.to(device) if device is not None else out


def pool_spans(hidden: torch.Tensor, spans: torch.Tensor, mode: str = "last") -> torch.Tensor:
    """One vector per text from packed `hidden [R, L, d]` and `spans [N, 3]` -> `[N, d]`.

    `last`: the text's last token (it has read the whole text); `mean`: mean over its tokens.
    """
    rows, starts, ends = spans.to(hidden.device).unbind(-1)
    if mode == "last":
        return hidden[rows, ends - 1]
    if mode == "mean":
        # Token -> text index, then one index_add: exact sums, no cumsum round-off.
        lengths = ends - starts
        text = torch.repeat_interleave(torch.arange(spans.shape[0], device=hidden.device), lengths)
        offsets = torch.arange(int(lengths.sum()), device=hidden.device) - torch.repeat_interleave(
            lengths.cumsum(0) - lengths, lengths
        )
        tok_rows = torch.repeat_interleave(rows, lengths)
        tok_cols = torch.repeat_interleave(starts, lengths) + offsets
        sums = hidden.new_zeros(spans.shape[0], hidden.shape[-1]).index_add_(
            0, text, hidden[tok_rows, tok_cols]
        )
        return sums / lengths[:, None].to(hidden.dtype)
    raise ValueError(f"text pooling {mode!r} is unknown; use 'last' or 'mean'")
