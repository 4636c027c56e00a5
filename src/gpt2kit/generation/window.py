"""`context_overflow="slide"`: the one sliding-window rule every decoding loop follows.

GPT-2's positions are absolute and baked into the cached keys, so a full cache cannot be
shifted. When prompt + new tokens outgrow `n_positions`, the loop keeps decoding into a
cache of `n_positions` columns; once it is full, the last `n_positions - slide_stride`
token columns are re-encoded from scratch (a fresh prefill, positions from 0), which leaves
room for `slide_stride` more tokens before the next re-encode. `slide_stride` (default
`n_positions // 4`) trades context for speed: a re-encode of `n_positions - stride` tokens
every `stride + 1` new tokens, so a quarter keeps at least 3/4 of the window as context
for every token at under 3 prefill tokens per new token, while re-encoding every step
(stride 1, the most context) would cost a whole window per token. In a left-padded batch
the window counts columns, so a short prompt's row slides with the longest one.

Why one helper: the greedy/sampling loop and beam search (and through the former,
`stream_generate`) each carried their own copy of this arithmetic; a fix to one (the
first cached column, the capacity, when to re-encode) now reaches all of them.
"""

from __future__ import annotations

from typing import Any

from .config import GenerationConfig


def slide_stride(cfg: GenerationConfig, n_positions: int) -> int:
    """Tokens decoded between two re-encodes under `context_overflow="slide"`."""
    return cfg.slide_stride if cfg.slide_stride is not None else max(1, n_positions // 4)


class SlidingWindow:
    """Which token columns the cache holds: `base .. base + cache.length`.

    `base` is 0 unless sliding; a prompt longer than the window starts at its last
    `n_positions` columns.

    Example:
        >>> w = SlidingWindow(GenerationConfig(context_overflow="slide", slide_stride=2), 8, 10)
        >>> w.base, w.capacity(20), w.full(10), w.full(11)
        (2, 8, False, True)
    """

    def __init__(self, cfg: GenerationConfig, n_positions: int, prompt_length: int) -> None:
        self.on = cfg.context_overflow == "slide"
        self.n_positions = n_positions
        self.keep = n_positions - slide_stride(cfg, n_positions)  # columns a re-encode keeps
        self.base = max(0, prompt_length - n_positions) if self.on else 0

    def capacity(self, total: int) -> int:
        """Cache positions to allocate for `total` token columns."""
        return min(total - self.base, self.n_positions)

    def full(self, cur: int) -> bool:
        """True when column `cur - 1` (the next one to feed) no longer fits the cache."""
        return self.on and cur - self.base > self.n_positions

    def shift(self, cur: int, cache: Any) -> int:
        """Start a re-encode: empty the cache, return the first column to feed again."""
        self.base = cur - self.keep
        cache.crop(0)
        return self.base
