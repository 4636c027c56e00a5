"""Contrastive search (`penalty_alpha > 0`, `top_k > 1`): Su et al. 2022, as `transformers` 4.x ran it.

Each step takes the `top_k` most likely next tokens, runs all of them through the model
at once (the cache expanded to `B * top_k` rows), and keeps, per row, the candidate with
the best `(1 - alpha) * p(token) - alpha * max cosine(candidate's last hidden state, every
earlier position's)`: likely, but unlike what the text already said. The kept
candidate's forward already holds the next step's logits and its cache row, so a step
costs one forward of `B * top_k` single tokens and two cache row selections.

Ported from `transformers`' `_contrastive_search` / `_ranking_fast` (4.4x, the last
in-library version; 5.x moved it to the Hub). Padding positions are left out of the
cosine maximum through the attention mask, as there. `output_hidden_states` /
`output_attentions` record the prompt's, then each kept candidate's, as there.
`context_overflow="slide"` is not supported (an error).
"""

from __future__ import annotations

from typing import Any

import torch

from ..nn.cache import KVCache
from .processors import apply_processors
from .setup import DecodeSetup


class _Kept:
    """The kept candidate's per-layer outputs, as `Record.step` reads a model output."""

    def __init__(self, hidden_states: tuple, attentions: tuple | None) -> None:
        self.hidden_states, self.attentions = hidden_states, attentions


def ranking(
    context_hidden: torch.Tensor,
    next_hidden: torch.Tensor,
    top_k_probs: torch.Tensor,
    context_mask: torch.Tensor,
    alpha: float,
    top_k: int,
) -> torch.Tensor:
    """Index (in `0..top_k`) of each row's chosen candidate (`transformers`' `_ranking_fast`).

    `context_hidden [B*k, S, d]`, `next_hidden [B*k, 1, d]`, `top_k_probs [B, k]`,
    `context_mask [B*k, S]` (1 = real position).
    """
    norm_context = context_hidden / context_hidden.norm(dim=2, keepdim=True)
    norm_next = next_hidden / next_hidden.norm(dim=2, keepdim=True)
    cosine = torch.matmul(norm_context, norm_next.transpose(1, 2)).squeeze(-1)  # [B*k, S]
    penalty_mask = (1 - context_mask.to(cosine.dtype)) * torch.finfo(cosine.dtype).min
    degeneration = (cosine + penalty_mask).max(dim=-1).values  # [B*k]
    score = (1.0 - alpha) * top_k_probs.view(-1) - alpha * degeneration
    return torch.stack(torch.split(score, top_k)).argmax(dim=-1)  # [B]


def contrastive_search(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    s: DecodeSetup,
) -> torch.Tensor:
    """Contrastive search over `ids [B, T]` (left-padded, `mask` None without padding)."""
    cfg, processors, eos, pad, max_new = s.cfg, s.processors, s.eos, s.pad, s.max_new
    stop, extra_kwargs, record, criteria = s.stop, s.extra_kwargs, s.record, s.criteria
    if cfg.context_overflow == "slide":
        raise ValueError('contrastive search does not support context_overflow="slide"')
    k, alpha = int(cfg.top_k), float(cfg.penalty_alpha)  # type: ignore[arg-type]
    B, T = ids.shape
    device = ids.device
    total = T + max_new
    tokens = torch.full((B, total), pad if pad is not None else 0, dtype=torch.long, device=device)
    tokens[:, :T] = ids
    mask_buf = torch.ones(B, total, dtype=torch.bool, device=device)
    if mask is not None:
        mask_buf[:, :T] = mask
    pos0 = mask_buf[:, :T].sum(1, keepdim=True)  # position of column T
    eos_t = torch.tensor(eos, device=device) if eos else None
    pad_t = torch.tensor(pad if pad is not None else 0, device=device)
    live = torch.ones(B, dtype=torch.bool, device=device)
    rows = torch.arange(B, device=device)
    expand = rows.repeat_interleave(k)
    extra_k = {name: v.repeat_interleave(k, 0) for name, v in extra_kwargs.items()}
    cache = KVCache(model.config.n_layer, capacity=total)

    attn = record is not None and record.attentions is not None
    out = model(
        input_ids=ids,
        attention_mask=mask,
        past_key_values=cache,
        use_cache=True,
        output_hidden_states=True,
        output_attentions=attn,
        logits_to_keep=1,
        **extra_kwargs,
    )
    layers: Any = out  # what `record.step` keeps: the prefill, then each kept candidate's
    context = out.hidden_states[-1]  # [B, T, d]: the final norm's output at every position
    logits = out.logits[:, -1].float()
    cur = T
    while cur < total:
        if record is not None:
            record.step(layers)
        if record is not None and record.logits is not None:
            record.logits.append(logits.clone())
        scores = apply_processors(processors, tokens[:, :cur], logits) if processors else logits
        if record is not None and record.scores is not None:
            record.scores.append(scores)
        top_probs, top_ids = scores.softmax(-1).topk(k, dim=-1)  # [B, k]

        # Every candidate through the model at once: the cache expanded to B * k rows.
        cache.reorder(expand)
        step_mask = mask_buf[:, : cur + 1].repeat_interleave(k, 0) if mask is not None else None
        pos = (pos0 + (cur - T)).repeat_interleave(k, 0) if mask is not None else None
        cand = model(
            input_ids=top_ids.reshape(-1, 1),
            attention_mask=step_mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
            output_hidden_states=True,
            output_attentions=attn,
            logits_to_keep=1,
            **extra_k,
        )
        next_hidden = cand.hidden_states[-1]  # [B*k, 1, d]
        chosen = ranking(
            context.repeat_interleave(k, 0),
            next_hidden,
            top_probs,
            mask_buf[:, :cur].repeat_interleave(k, 0),
            alpha,
            k,
        )
        keep = rows * k + chosen
        cache.reorder(keep)  # the chosen candidate's row: prompt + every kept token
        nxt = top_ids[rows, chosen]
        context = torch.cat([context, next_hidden[keep]], dim=1)
        logits = cand.logits[:, -1].float()[keep]
        if record is not None:
            layers = _Kept(
                tuple(h[keep] for h in cand.hidden_states),
                tuple(a[keep] for a in cand.attentions) if attn else None,
            )
        if eos_t is not None:
            nxt = torch.where(live, nxt, pad_t)
        tokens[:, cur] = nxt
        cur += 1
        if eos_t is not None:
            live &= ~torch.isin(nxt, eos_t)
        if stop is not None:
            tail = tokens[:, max(0, cur - stop.longest - 1) : cur].tolist()
            for r in range(B):
                if stop.hit(tail[r]):
                    live[r] = False
        if criteria:
            recorded = (
                tuple(record.scores) if record is not None and record.scores is not None else None
            )
            live &= ~criteria(tokens[:, :cur], recorded)
        if (eos_t is not None or stop is not None or criteria) and not bool(live.any()):
            break
    if record is not None:
        record.past_key_values = cache
    return tokens[:, :cur]
