"""The greedy / sampling loop over a preallocated KV cache (`decode_steps`).

Speed. The cache holds prompt + max_new_tokens from the start (one allocation); each
step feeds one token per row and asks for the last position's logits only
(`logits_to_keep=1`). Without padding the step passes `attention_mask=None`, the
backbone's plain-causal fast path; with padding it passes a view of one preallocated
mask buffer and the next positions directly.

Finished rows. Greedy / sampling with an EOS id (rows stopped by EOS, a stop string or a
stopping criterion are filled with pads) stop computing rows that have finished: once at
least a quarter of the rows still computed (and one) are done, the batch is compacted
(cache rows, mask buffer, positions, per-row processor state and encoder states selected
with one `index_select` each) and results keep going into the full-size output by row
index. Compacting at a quarter bounds the copies (each costs about one step's cache
traffic) to a few per run while the model stops paying for rows that only produce pads.
The tokens are exactly those of the uncompacted loop: sampling draws the `Exp(1)` noise
of `torch.multinomial` for the whole batch (see `_sample_rows`). Compaction is off when
`return_dict_in_generate` keeps per-row outputs, or a user `logits_processor` or
stopping criterion may keep per-row state.

Sampling draws from the same distribution as `transformers`; with the same seed it draws
the same tokens unless a top-k warper is on and the model runs on CPU: there the draw
runs over the k candidates only (`sample`), a different random stream (same seed, same
tokens from gpt2kit every run).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .. import native
from ..nn.cache import KVCache
from .processors import (
    ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor,
    LogitNormalization,
    LogitsProcessor,
    MinLengthLogitsProcessor,
    MinNewTokensLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    apply_processors,
)
from .setup import DecodeSetup
from .window import SlidingWindow

# Drop finished rows once at least this fraction of the computed rows (and one) finished;
# None never drops them (the plain loop, kept for comparisons).
_COMPACT_FRACTION: float | None = 0.25
# Devices whose kernels run asynchronously: there the loop queues the next step before it
# waits to learn whether any row is still live (`_LiveFlag`).
_OVERLAP_DEVICES = ("cuda",)


class _LiveFlag:
    """Reads back "is any row still live?" without stalling an asynchronous device.

    Why: asking `int(live.sum())` before queueing the next step makes the host wait for
    the GPU to drain every step, and the GPU then idles while the host prepares the next
    one; at batch 1 that idle time is most of a step. Instead the loop copies `live.any()`
    into pinned host memory (non-blocking), queues the next step, and only then waits for
    the copy, which the device finished long before the step it is now running. When every
    row had finished, that one queued step is wasted and its result dropped: the ids are
    exactly the synchronous loop's.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.host = torch.ones((), dtype=torch.bool, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None
        self.stream = torch.cuda.current_stream(device) if self.cuda else None

    def start(self, live: torch.Tensor) -> None:
        self.host.copy_(live.any(), non_blocking=self.cuda)
        if self.event is not None:
            self.event.record(self.stream)  # the model's device, not the current one

    def any_live(self) -> bool:
        if self.event is not None:
            self.event.synchronize()
        return bool(self.host)


# Built-in processors that keep no per-row state: a compacted batch just passes fewer rows.
_ROW_FREE = (
    ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor,
    LogitNormalization,
    MinLengthLogitsProcessor,
    MinNewTokensLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    SequenceBiasLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)


def select_processors(
    processors: Sequence[LogitsProcessor], index: torch.Tensor | None
) -> list[LogitsProcessor] | None:
    """`processors` for the rows `index` of the batch; None if one may keep per-row state.

    `index=None` only checks. The repetition penalty holds each row's left-padding length;
    everything else built in is row-free. A user processor (or the prefix constraint,
    which numbers prompts) is unknown: None.
    """
    out: list[LogitsProcessor] = []
    for p in processors:
        if type(p) in _ROW_FREE:
            out.append(p)
        elif type(p) is RepetitionPenaltyLogitsProcessor:
            skip = p.prompt_ignore_length
            if index is not None and isinstance(skip, torch.Tensor):
                p = copy.copy(p)
                p.prompt_ignore_length = skip.index_select(0, index)
            out.append(p)
        else:
            return None
    return out


def sample(
    scores: torch.Tensor,
    n_rows: int,
    rows: torch.Tensor | None,
    generator: torch.Generator | None,
    top_k: int | None,
    survivors: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One token per row from `softmax(scores)`.

    With a top-k warper (`top_k`) every score outside a row's top k is already `-inf`, so
    the draw runs over those k candidates only: the same distribution, but the random
    noise is drawn for k entries instead of the whole vocabulary (at batch 8 over 50257
    entries the noise cost 13 ms of a 115 ms CPU step, more than the attention). Should
    a tie at the k-th score leave more than k finite scores, the full draw runs.
    Without a top-k warper the draw is `torch.multinomial` over the vocabulary, as in
    `transformers`, so the same seed draws the same tokens there.
    """
    index = None
    if survivors is not None:  # (the warper's own selection, for exactly these scores)
        scores, index = survivors
    elif top_k is not None and top_k < scores.shape[-1]:
        values, index = native.topk_rows(scores, top_k + 1)
        if bool(torch.isinf(values[:, top_k]).all()):  # no survivor past the k-th
            scores = values[:, :top_k]
            index = index[:, :top_k]
        else:
            index = None
    probs = scores.softmax(-1)
    if rows is None:
        choice = torch.multinomial(probs, 1, generator=generator)[:, 0]
    else:
        choice = _sample_rows(probs, n_rows, rows, generator)
    return choice if index is None else index.gather(1, choice[:, None])[:, 0]


def _sample_rows(
    probs: torch.Tensor, n_rows: int, rows: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """`torch.multinomial(full_probs, 1)[rows]` given only the `rows` of `full_probs`.

    `multinomial(p, 1)` is `argmax(p / q)` with `q ~ Exp(1)` of `p`'s shape (the
    exponential race; PyTorch's own implementation for one sample). Drawing `q` for all
    `n_rows` keeps the random stream where the uncompacted loop has it, so every kept row
    gets the token it would have got.
    """
    q = torch.empty(n_rows, probs.shape[-1], dtype=probs.dtype, device=probs.device)
    q.exponential_(1, generator=generator)
    return (probs / q.index_select(0, rows)).argmax(-1)


def decode_steps(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    s: DecodeSetup,
) -> Iterator[torch.Tensor]:
    """Greedy / sampling loop as a generator: yields each step's tokens `[N]`, returns all ids.

    A generator so `stream_generate` can hand out text between steps (and stop early by
    closing it) without a thread. Finished rows are dropped from the computed batch
    (`rows` maps computed rows to output rows) and `context_overflow="slide"` re-encodes
    the window when the cache is full (`window.py`); `record` collects what
    `return_dict_in_generate` asks for; `criteria` are `transformers`-style stopping
    criteria (and `max_time`), called with the ids so far after every token.
    """
    cfg, processors, eos, pad, max_new = s.cfg, s.processors, s.eos, s.pad, s.max_new
    stop, generator, extra_kwargs, record, criteria = (
        s.stop,
        s.generator,
        s.extra_kwargs,
        s.record,
        s.criteria,
    )
    N, T = ids.shape
    device = ids.device
    total = T + max_new
    window = SlidingWindow(cfg, model.config.n_positions, T)
    tokens = torch.full((N, total), pad if pad is not None else 0, dtype=torch.long, device=device)
    tokens[:, :T] = ids
    cache = KVCache(model.config.n_layer, capacity=window.capacity(total))
    mask_buf = pos_next = None
    pos_col = T
    if mask is not None:
        mask_buf = torch.ones(N, total, dtype=torch.bool, device=device)
        mask_buf[:, :T] = mask
    eos_t = torch.tensor(eos, device=device) if eos else None
    pad_t = torch.tensor(pad if pad is not None else 0, device=device)
    live = torch.ones(N, dtype=torch.bool, device=device)  # per computed row
    criteria = criteria or None
    call_kwargs = dict(record.model_kwargs()) if record is not None else {}
    # On CPU, sample among the top-k warper's survivors only (see `sample`).
    warper = next((p for p in processors if type(p) is TopKLogitsWarper), None)
    candidates = warper.top_k if warper is not None and device.type == "cpu" else None
    rows: torch.Tensor | None = None  # output row of each computed row; None: all, in order
    compact = (
        _COMPACT_FRACTION is not None
        and N > 1
        and eos_t is not None  # without EOS, finished rows keep their tokens (transformers)
        and (record is None or not record.every_row)
        and select_processors(processors, None) is not None
        and (criteria is None or criteria.row_free)
        and not getattr(model, "fixed_batch", False)  # a static decoder keeps its shape
    )
    overlap = (
        _LiveFlag(device)
        if device.type in _OVERLAP_DEVICES
        and eos_t is not None
        and stop is None
        and criteria is None
        and not compact
        and (record is None or not record.keep_cache)  # the extra step would enter the cache
        else None
    )

    def encode(start: int, end: int) -> Any:
        # Prefill columns start..end-1 into an empty cache; positions come from the mask.
        nonlocal pos_next, pos_col
        cols = tokens[:, start:end] if rows is None else tokens[rows, start:end]
        step_mask = mask_buf[:, start:end] if mask_buf is not None else None
        if step_mask is not None:
            pos_next, pos_col = step_mask.sum(1, keepdim=True), end  # position of column `end`
        return model(
            input_ids=cols,
            attention_mask=step_mask,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **extra_kwargs,
            **call_kwargs,
        )

    # Grad mode is thread-local state: set it around each step's compute, never across a
    # `yield`, so the consumer's code between steps runs in its own mode.
    with torch.no_grad():
        out = encode(window.base, T)
    cur = T
    while True:
        with torch.no_grad():
            logits = out.logits[:, -1].float()
            if record is not None:
                record.step(out)
                if record.logits is not None:
                    record.logits.append(logits.clone())
            scores = logits
            if processors:
                seen = tokens[:, :cur] if rows is None else tokens[rows, :cur]
                scores = apply_processors(processors, seen, scores)
            if record is not None and record.scores is not None:
                record.scores.append(scores)
            if cfg.do_sample:
                kept = warper.survivors(scores) if candidates is not None else None
                nxt = sample(scores, N, rows, generator, candidates, kept)
            else:
                nxt = native.argmax_rows(scores)
            if eos_t is not None:
                nxt = torch.where(live, nxt, pad_t)
            if rows is None:
                tokens[:, cur] = nxt
            else:
                tokens[rows, cur] = nxt
            cur += 1
            if eos_t is not None:
                live &= ~torch.isin(nxt, eos_t)
            if stop is not None:
                start = max(0, cur - stop.longest - 1)
                tail = (tokens[:, start:cur] if rows is None else tokens[rows, start:cur]).tolist()
                for r in range(len(tail)):
                    if tail[r] and stop.hit(tail[r]):
                        live[r] = False
            if criteria is not None:
                so_far = tokens[:, :cur] if rows is None else tokens[rows, :cur]
                recorded = (
                    tuple(record.scores)
                    if record is not None and record.scores is not None
                    else None
                )
                live &= ~criteria(so_far, recorded)
        yield nxt if rows is None else tokens[:, cur - 1]
        if cur == total:
            break
        if overlap is not None:
            overlap.start(live)  # read back after the next step is queued (see _LiveFlag)
        elif eos_t is not None or stop is not None or criteria is not None:
            n_live, n = int(live.sum()), live.shape[0]
            if n_live == 0:
                break
            if compact and (n - n_live) >= max(1.0, _COMPACT_FRACTION * n):  # type: ignore[operator]
                # Drop the finished rows: every per-row tensor follows `keep`.
                keep = live.nonzero()[:, 0]
                rows = keep if rows is None else rows[keep]
                live, nxt = live[keep], nxt[keep]
                cache.reorder(keep)
                if mask_buf is not None:
                    mask_buf, pos_next = mask_buf[keep], pos_next[keep]  # type: ignore[index]
                processors = select_processors(processors, keep)  # type: ignore[assignment]
                extra_kwargs = {k: v.index_select(0, keep) for k, v in extra_kwargs.items()}
        with torch.no_grad():
            if window.full(cur):
                # The cache is full: re-encode the last columns, fresh positions.
                if overlap is not None and not overlap.any_live():
                    break
                out = encode(window.shift(cur, cache), cur)
                continue
            if mask_buf is not None:
                step_mask, pos = mask_buf[:, window.base : cur], pos_next + (cur - 1 - pos_col)
            else:
                step_mask = pos = None
            out = model(
                input_ids=nxt[:, None],
                attention_mask=step_mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                **extra_kwargs,
                **call_kwargs,
            )
        if overlap is not None and not overlap.any_live():
            break  # every row had finished: the step just queued is discarded
    if record is not None:
        record.past_key_values = cache
    return tokens[:, :cur]
