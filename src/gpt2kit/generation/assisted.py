"""Assisted (speculative) decoding and prompt-lookup decoding, greedy: the ids of greedy search.

Each round drafts up to `num_assistant_tokens` tokens cheaply, either with a small
`assistant_model` (greedy, its own cache, stopping early once its top probability falls
below `assistant_confidence_threshold`) or, with `prompt_lookup_num_tokens`, by finding
the last `max_matching_ngram_size` (default 2) tokens earlier in the sequence and copying
what followed them. The main model then reads the last token and the whole draft in one
forward and keeps the draft up to its first disagreement with its own greedy choice,
plus its own token there, so every kept token is the one greedy decoding gives (up to
float summation order between one wide forward and single-token steps). Both caches are
cropped back to the kept tokens (`KVCache.crop`).

As in `transformers`, batch 1 only and no sampling; `num_assistant_tokens_schedule`
"heuristic" / "heuristic_transient" grow the draft by 2 after a fully accepted round and
shrink it by 1 otherwise ("heuristic" keeps the value on the assistant's
`generation_config` for the next call). Unlike `transformers` (which checks its stopping
criteria once per round), EOS, stop strings and stopping criteria are checked after
every kept token, so the result equals greedy decoding's even when a stop string ends
inside an accepted draft.
"""

from __future__ import annotations

from typing import Any

import torch

from ..nn.cache import KVCache
from .processors import apply_processors
from .setup import DecodeSetup


class _Stream:
    """One model's view of the token row: its cache and how far that cache has read."""

    def __init__(self, model: Any, mask: torch.Tensor, pos0: torch.Tensor, T: int, total: int):
        self.model = model
        self.cache = KVCache(model.config.n_layer, capacity=total)
        self.mask, self.pos0, self.T = mask, pos0, T
        self.seen = 0  # token columns held in the cache
        self.padded = not bool(mask.all())

    def forward(
        self, tokens: torch.Tensor, end: int, keep: int, extra: dict[str, Any]
    ) -> torch.Tensor:
        """Feed columns `seen .. end`; float logits of the last `keep` of them `[keep, V]`."""
        start = self.seen
        kwargs: dict[str, Any] = {}
        if self.padded:
            kwargs["attention_mask"] = self.mask[:, :end]
            if start > 0:
                kwargs["position_ids"] = (
                    self.pos0
                    + torch.arange(start - self.T, end - self.T, device=tokens.device)[None]
                )
        out = self.model(
            input_ids=tokens[:, start:end],
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=keep,
            **kwargs,
            **extra,
        )
        self.seen = end
        return out.logits[0, -keep:].float()

    def crop(self, length: int) -> None:
        self.cache.crop(length)
        self.seen = min(self.seen, length)


def _lookup(tokens: torch.Tensor, cur: int, n_out: int, ngram_max: int) -> list[int]:
    """Prompt lookup: what followed the latest earlier match of the last n-gram (n from `ngram_max` down)."""
    row = tokens[0, :cur]
    for n in range(min(ngram_max, cur - 1), 0, -1):
        windows = row.unfold(0, n, 1)  # [cur - n + 1, n]
        hits = (windows[:-1] == row[-n:]).all(dim=1).nonzero()[:, 0]  # not the suffix itself
        for start in hits.tolist():
            begin = start + n
            end = min(begin + n_out, cur)
            if begin < end:
                return row[begin:end].tolist()
    return []


def assisted_decoding(
    model: Any,
    assistant: Any,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    s: DecodeSetup,
) -> torch.Tensor:
    """Greedy ids for `ids [1, T]` from draft-and-verify rounds (module docstring)."""
    cfg, processors, eos, pad, max_new = s.cfg, s.processors, s.eos, s.pad, s.max_new
    stop, extra_kwargs, record, criteria = s.stop, s.extra_kwargs, s.record, s.criteria
    kind = "prompt lookup" if assistant is None else "assisted"
    if ids.shape[0] != 1:
        raise ValueError(
            f"{kind} decoding supports batch 1 (as in transformers), got {ids.shape[0]} rows; "
            "call generate per prompt or drop assistant_model / prompt_lookup_num_tokens"
        )
    if cfg.do_sample:
        raise ValueError(f"{kind} decoding here is greedy: pass do_sample=False")
    if cfg.context_overflow == "slide":
        raise ValueError(f'{kind} decoding does not support context_overflow="slide"')
    if record is not None and (record.attentions is not None or record.hidden_states is not None):
        raise ValueError(
            f"output_attentions / output_hidden_states are not recorded by {kind} decoding; drop them"
        )
    if extra_kwargs:
        raise ValueError(f"{kind} decoding does not support encoder_hidden_states")
    if assistant is not None and assistant.config.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"assistant_model has vocab_size {assistant.config.vocab_size} but the model has "
            f"{model.config.vocab_size}; the assistant must share the model's vocabulary"
        )
    device = ids.device
    T = ids.shape[1]
    total = T + max_new
    tokens = torch.full((1, total), pad if pad is not None else 0, dtype=torch.long, device=device)
    tokens[:, :T] = ids
    mask_buf = torch.ones(1, total, dtype=torch.bool, device=device)
    if mask is not None:
        mask_buf[:, :T] = mask
    pos0 = mask_buf[:, :T].sum(1, keepdim=True)
    eos_set = set(eos)
    main = _Stream(model, mask_buf, pos0, T, total)
    helper = (
        _Stream(assistant, mask_buf.to(assistant.device), pos0, T, total) if assistant else None
    )
    n_draft = int(cfg.num_assistant_tokens)
    if helper is not None and cfg.num_assistant_tokens_schedule == "heuristic":
        n_draft = int(
            getattr(assistant.generation_config, "num_assistant_tokens", n_draft) or n_draft
        )
    threshold = cfg.assistant_confidence_threshold
    cur = T

    def draft(limit: int) -> list[int]:
        if limit <= 0:
            return []
        if helper is None:
            return _lookup(
                tokens,
                cur,
                min(limit, cfg.prompt_lookup_num_tokens),
                cfg.max_matching_ngram_size or 2,
            )  # type: ignore[arg-type]
        out: list[int] = []
        work = tokens.to(assistant.device)
        for i in range(limit):
            logits = helper.forward(work, cur + i, 1, {})[-1:]
            scores = (
                apply_processors(processors, work[:, : cur + i], logits) if processors else logits
            )
            token = int(scores.argmax(-1))
            out.append(token)
            work[0, cur + i] = token
            if token in eos_set:
                break
            if threshold and float(scores.softmax(-1)[0, token]) < threshold:
                break
        return out

    done = False
    while cur < total and not done:
        cands = draft(min(n_draft, total - cur - 1))
        n = len(cands)
        if n:
            tokens[0, cur : cur + n] = torch.tensor(cands, device=device)
        logits = main.forward(tokens, cur + n, n + 1, {})  # [n + 1, V]: after cur-1 .. cur+n-1
        accepted = 0
        for i in range(n + 1):
            raw = logits[i : i + 1]
            scores = apply_processors(processors, tokens[:, : cur + i], raw) if processors else raw
            token = int(scores.argmax(-1))
            if record is not None:
                if record.logits is not None:
                    record.logits.append(raw.clone())
                if record.scores is not None:
                    record.scores.append(scores)
            tokens[0, cur + i] = token
            accepted += 1
            finished = token in eos_set
            if stop is not None and stop.hit(
                tokens[0, max(0, cur + i - stop.longest) : cur + i + 1].tolist()
            ):
                finished = True
            if criteria:
                recorded = (
                    tuple(record.scores)
                    if record is not None and record.scores is not None
                    else None
                )
                finished = finished or bool(criteria(tokens[:, : cur + i + 1], recorded).all())
            if finished:
                done = True
                break
            if i < n and token != cands[i]:
                break  # the draft disagrees from here on: keep the model's own token
        if cfg.num_assistant_tokens_schedule != "constant" and helper is not None:
            n_draft = n_draft + 2 if accepted == n + 1 else max(1, n_draft - 1)
        cur += accepted
        # Both caches keep only the kept columns but the last (fed with the next round).
        main.crop(cur - 1)
        if helper is not None:
            helper.crop(cur - 1)
    if helper is not None and cfg.num_assistant_tokens_schedule == "heuristic":
        assistant.generation_config.num_assistant_tokens = n_draft
    if record is not None:
        record.past_key_values = main.cache
    return tokens[:, :cur]
