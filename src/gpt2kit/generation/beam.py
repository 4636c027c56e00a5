"""Beam search, step for step `transformers`' vectorized `_beam_search` (and beam sampling).

Diverse (group) beam search lives in `beam_groups` below it: `num_beam_groups` groups of
beams, each penalized for tokens earlier groups picked at the same step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..nn.cache import KVCache
from .processors import LogitsProcessor, apply_processors
from .sampling import select_processors
from .setup import DecodeSetup
from .window import SlidingWindow


def beam_search(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    s: DecodeSetup,
) -> torch.Tensor:
    """Vectorized beam search, step for step `transformers`' `_beam_search`.

    Each step takes the top `(1 + n_eos) * num_beams` continuations per prompt (so at least
    `num_beams` survive even if all EOS candidates finish), moves those hitting EOS (or a
    stop string, or the length limit) among the top `num_beams` into the finished set
    (scored `logp / new_len ** length_penalty`), keeps the best unfinished ones running,
    and reorders the cache. `early_stopping`: True stops a prompt once `num_beams`
    hypotheses are finished; False / "never" stop when no running beam can beat the
    worst finished one (False estimates with the current length, "never" with the
    longest possible when `length_penalty > 0`).

    `record` (return_dict_in_generate) also tracks, like `transformers`, the row each
    hypothesis' tokens came from (`beam_indices`). `context_overflow="slide"` re-encodes
    the running beams' last tokens when the cache is full (`window.py`); `criteria`
    (`transformers`-style stopping criteria, `max_time`) are asked about every candidate.
    """
    cfg, processors, eos, pad = s.cfg, s.processors, s.eos, s.pad
    max_length = ids.shape[1] + s.max_new
    stop, generator, extra_kwargs, record, criteria = (
        s.stop,
        s.generator,
        s.extra_kwargs,
        s.record,
        s.criteria,
    )
    nb = cfg.num_beams
    N, T = ids.shape
    B = N // nb
    device = ids.device
    window = SlidingWindow(cfg, model.config.n_positions, T)
    base = window.base  # first token column held in the cache
    call_kwargs = dict(record.model_kwargs()) if record is not None else {}
    lp, early = cfg.length_penalty, cfg.early_stopping
    keep = max(2, 1 + len(eos)) * nb
    top_mask = torch.arange(keep, device=device) < nb
    fill = pad if pad is not None else (eos[0] if eos else 0)
    eos_t = torch.tensor(eos, device=device) if eos else None

    running = torch.full((B, nb, max_length), fill, dtype=torch.long, device=device)
    running[:, :, :T] = ids.view(B, nb, T)
    sequences = running.clone()
    running_scores = torch.zeros(B, nb, device=device)
    running_scores[:, 1:] = -1e9  # all beams start equal: only the first may expand at step 1
    beam_scores = torch.full((B, nb), -1e9, device=device)
    beam_lengths = torch.zeros(B, nb, dtype=torch.long, device=device)
    finished = torch.zeros(B, nb, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)
    batch_offset = torch.arange(B, device=device)[:, None] * nb
    track = record is not None  # beam_indices: [B, nb, new] source row per new token, -1 unset
    if track:
        running_idx = torch.full((B, nb, max_length - T), -1, dtype=torch.long, device=device)
        beam_idx = running_idx.clone()

    cache = KVCache(model.config.n_layer, capacity=window.capacity(max_length))
    mask_buf = positions = None
    pos_col = T
    if mask is not None:
        # Rows of one prompt share their mask and running beams never hold pads: no reorder.
        mask_buf = torch.ones(N, max_length, dtype=torch.bool, device=device)
        mask_buf[:, :T] = mask
        positions = mask[:, base:].sum(1, keepdim=True)
    out = model(
        input_ids=ids[:, base:],
        attention_mask=mask[:, base:] if mask is not None else None,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
        **extra_kwargs,
        **call_kwargs,
    )
    flat = ids
    cur = T
    while True:
        logits = out.logits[:, -1].float()
        logp = F.log_softmax(logits, dim=-1)
        if processors:
            logp = apply_processors(processors, flat, logp)
        if record is not None:
            record.step(out)
            if record.logits is not None:
                record.logits.append(logits.clone())
            if record.scores is not None:
                record.scores.append(logp.clone())
        V = logp.shape[-1]
        logp = (logp.view(B, nb, V) + running_scores[:, :, None]).view(B, nb * V)
        if cfg.do_sample:
            idx = torch.multinomial(logp.softmax(-1), keep, generator=generator)
            top_logp = logp.gather(1, idx)
            top_logp, order = top_logp.sort(dim=-1, descending=True)
            idx = idx.gather(1, order)
        else:
            top_logp, idx = torch.topk(logp, keep)
        src = idx // V
        tok = idx % V
        cand = running.gather(1, src[:, :, None].expand(B, keep, max_length)).clone()
        cand[:, :, cur] = tok
        if track:
            cand_idx = running_idx.gather(1, src[:, :, None].expand(B, keep, max_length - T))
            cand_idx[:, :, cur - T] = src + batch_offset

        hits = torch.zeros(B, keep, dtype=torch.bool, device=device)
        if cur + 1 >= max_length:
            hits[:] = True
        if eos_t is not None:
            hits |= torch.isin(tok, eos_t)
        if stop is not None:
            tail = cand[:, :, max(0, cur + 1 - stop.longest - 1) : cur + 1].tolist()
            for b in range(B):
                for k in range(keep):
                    if stop.hit(tail[b][k]):
                        hits[b, k] = True
        if criteria:
            so_far = cand[:, :, : cur + 1].reshape(B * keep, cur + 1)
            recorded = (
                tuple(record.scores) if record is not None and record.scores is not None else None
            )
            hits |= criteria(so_far, recorded).view(B, keep)

        # Best unfinished continuations keep running.
        run_logp = top_logp + hits.to(torch.float32) * -1.0e9
        nxt = torch.topk(run_logp, k=nb)[1]
        running = cand.gather(1, nxt[:, :, None].expand(B, nb, max_length))
        running_scores = run_logp.gather(1, nxt)
        src_beam = src.gather(1, nxt)
        if track:
            running_idx = cand_idx.gather(1, nxt[:, :, None].expand(B, nb, max_length - T))

        # Finished candidates among the top num_beams enter the finished set if good enough.
        just = hits & top_mask[None, :]
        fin_logp = top_logp / ((cur + 1 - T) ** lp)
        full = finished.all(dim=-1, keepdim=True) & (early is True)
        fin_logp += full.to(torch.float32) * -1.0e9
        fin_logp += (~improvable).to(torch.float32) * -1.0e9
        fin_logp += (~just) * -1.0e9
        merged_scores = torch.cat((beam_scores, fin_logp), dim=1)
        sel = torch.topk(merged_scores, k=nb)[1]
        sequences = torch.cat((sequences, cand), dim=1).gather(
            1, sel[:, :, None].expand(B, nb, max_length)
        )
        beam_scores = merged_scores.gather(1, sel)
        new_len = torch.full((B, keep), cur + 1 - T, dtype=torch.long, device=device)
        beam_lengths = torch.cat((beam_lengths, new_len), dim=1).gather(1, sel)
        finished = torch.cat((finished, just), dim=1).gather(1, sel)
        if track:
            beam_idx = torch.cat((beam_idx, cand_idx), dim=1).gather(
                1, sel[:, :, None].expand(B, nb, max_length - T)
            )
        cur += 1

        # Can a running beam still beat the worst finished hypothesis?
        if early == "never" and lp > 0.0:
            best_len = max_length - T
        else:
            best_len = cur - T
        best_running = running_scores[:, :1] / (best_len**lp)
        worst_finished = torch.where(finished, beam_scores.min(dim=1, keepdim=True)[0], -1.0e9)
        improvable = improvable & (best_running > worst_finished).any(dim=-1, keepdim=True)
        go_on = (
            bool(improvable.any())
            and not (bool(finished.all()) and early is True)
            and not bool(hits.all())
        )
        if not go_on:
            break

        flat = running[:, :, :cur].reshape(N, cur)
        if window.full(cur):
            # The cache is full: re-encode the running beams' last tokens.
            base = window.shift(cur, cache)
            step_mask = mask_buf[:, base:cur] if mask_buf is not None else None
            if step_mask is not None:
                positions, pos_col = step_mask.sum(1, keepdim=True), cur
            out = model(
                input_ids=flat[:, base:],
                attention_mask=step_mask,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                **extra_kwargs,
                **call_kwargs,
            )
            continue
        cache.reorder((src_beam + batch_offset).view(-1))
        if mask_buf is not None:
            step_mask, pos = mask_buf[:, base:cur], positions + (cur - 1 - pos_col)
        else:
            step_mask = pos = None
        out = model(
            input_ids=flat[:, -1:],
            attention_mask=step_mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **extra_kwargs,
            **call_kwargs,
        )

    if record is not None:
        record.past_key_values = cache
    n = cfg.num_return_sequences
    seqs = sequences[:, :n].reshape(B * n, max_length)
    new = int(beam_lengths[:, :n].max())
    if record is not None:
        if record.scores is not None:
            record.sequences_scores = beam_scores[:, :n].reshape(B * n)
        record.beam_indices = beam_idx[:, :n].reshape(B * n, max_length - T)[:, :new]
    return seqs[:, : T + new]


class _Hypotheses:
    """Finished hypotheses of one (prompt, group): `transformers` 4.x `BeamHypotheses`."""

    def __init__(
        self, size: int, length_penalty: float, early_stopping: bool | str, max_length: int
    ):
        self.size, self.lp, self.early, self.max_length = (
            size,
            length_penalty,
            early_stopping,
            max_length,
        )
        self.beams: list[tuple[float, torch.Tensor]] = []
        self.worst = 1e9

    def add(self, hyp: torch.Tensor, sum_logprobs: float, generated_len: int) -> None:
        score = sum_logprobs / (generated_len**self.lp)
        if len(self.beams) < self.size or score > self.worst:
            self.beams.append((score, hyp))
            if len(self.beams) > self.size:
                ranked = sorted((s, i) for i, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst = ranked[1][0]
            else:
                self.worst = min(score, self.worst)

    def is_done(self, best_sum_logprobs: float, cur_len: int, prompt_len: int) -> bool:
        if len(self.beams) < self.size:
            return False
        if self.early is True:
            return True
        if self.early == "never" and self.lp > 0.0:
            best = best_sum_logprobs / (self.max_length - prompt_len) ** self.lp
        else:
            best = best_sum_logprobs / (cur_len - prompt_len) ** self.lp
        return self.worst >= best


def group_beam_search(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    s: DecodeSetup,
) -> torch.Tensor:
    """Diverse beam search (Vijayakumar et al. 2016), `transformers` 4.x `_group_beam_search`.

    The `num_beams` beams of a prompt form `num_beam_groups` groups of `num_beams /
    num_beam_groups`; each step the groups pick their continuations one after another,
    each from the log-softmax minus `diversity_penalty` times how often an earlier group
    picked that token at this step (Hamming diversity), then the processors, then an
    ordinary beam step (`BeamSearchScorer.process`: the top `2 * group_size` candidates,
    EOS ones among the top `group_size` become finished hypotheses). Finished hypotheses
    are kept per (prompt, group) and the best `num_return_sequences` over all groups are
    returned, an EOS appended where it fits, as `BeamSearchScorer.finalize` does.
    The whole search stops once every (prompt, group) is done or every row meets a
    stopping criterion (`max_time`, `stopping_criteria`), as there.
    """
    cfg, processors, eos, pad = s.cfg, s.processors, s.eos, s.pad
    max_length = ids.shape[1] + s.max_new
    stop, extra_kwargs, record, criteria = s.stop, s.extra_kwargs, s.record, s.criteria
    if stop is not None:
        raise ValueError(
            "stop_strings are not supported with diverse beam search (num_beam_groups > 1)"
        )
    if cfg.context_overflow == "slide":
        raise ValueError('diverse beam search does not support context_overflow="slide"')
    nb, groups = cfg.num_beams, cfg.num_beam_groups
    size = nb // groups
    N, T = ids.shape
    B = N // nb
    device = ids.device
    lp, early = cfg.length_penalty, cfg.early_stopping
    penalty = float(cfg.diversity_penalty)
    n_eos = len(eos)
    eos_set = set(eos)
    fill = pad if pad is not None else (eos[0] if eos else 0)
    hyps = [_Hypotheses(size, lp, early, max_length) for _ in range(B * groups)]
    done = [False] * (B * groups)
    call_kwargs = dict(record.model_kwargs()) if record is not None else {}

    beam_scores = torch.full((B, nb), -1e9, device=device)
    beam_scores[:, ::size] = 0
    beam_scores = beam_scores.view(-1)
    cache = KVCache(model.config.n_layer, capacity=max_length)
    mask_buf = positions = None
    if mask is not None:
        mask_buf = torch.ones(N, max_length, dtype=torch.bool, device=device)
        mask_buf[:, :T] = mask
        positions = mask.sum(1, keepdim=True)
    seqs = ids
    out = model(
        input_ids=ids,
        attention_mask=mask,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
        **extra_kwargs,
        **call_kwargs,
    )
    cur = T
    while True:
        if record is not None:
            record.step(out)
        logits_all = out.logits[:, -1].float()
        if record is not None and record.logits is not None:
            record.logits.append(logits_all.clone())
        processed = (
            torch.zeros_like(logits_all)
            if record is not None and record.scores is not None
            else None
        )
        current = torch.zeros(N, dtype=torch.long, device=device)
        reorder = torch.zeros(N, dtype=torch.long, device=device)
        new_seqs = seqs.clone()
        for g in range(groups):
            start = g * size
            rows = torch.tensor(
                [b * nb + i for b in range(B) for i in range(start, start + size)], device=device
            )
            group_ids = seqs[rows]
            scores = F.log_softmax(logits_all[rows], dim=-1)
            V = scores.shape[-1]
            if penalty and start > 0:  # Hamming diversity against the earlier groups' picks
                scores = scores.clone()
                for b in range(B):
                    earlier = current[b * nb : b * nb + start]
                    freq = torch.bincount(earlier, minlength=V).to(scores.dtype)
                    scores[b * size : (b + 1) * size] -= penalty * freq
            if processors:
                scores = apply_processors(_rows(processors, rows), group_ids, scores)
            if processed is not None:
                processed[rows] = scores
            total = (scores + beam_scores[rows][:, None]).view(B, size * V)
            top_scores, top = torch.topk(total, max(2, 1 + n_eos) * size, dim=1)
            src, tok = top // V, top % V
            next_scores = torch.zeros(B, size, device=device)
            next_tokens = torch.zeros(B, size, dtype=torch.long, device=device)
            next_src = torch.zeros(B, size, dtype=torch.long, device=device)
            top_s, top_t, top_i = top_scores.tolist(), tok.tolist(), src.tolist()
            for b in range(B):
                h = b * groups + g
                if done[h]:
                    next_tokens[b] = fill
                    continue
                k = 0
                for rank, (t, s, i) in enumerate(zip(top_t[b], top_s[b], top_i[b])):
                    row = b * size + i
                    if t in eos_set:
                        if rank >= size:
                            continue
                        hyps[h].add(group_ids[row].clone(), s, cur + 1 - T)
                    else:
                        next_scores[b, k], next_tokens[b, k], next_src[b, k] = s, t, row
                        k += 1
                    if k == size:
                        break
                done[h] = done[h] or hyps[h].is_done(max(top_s[b]), cur + 1, T)
            beam_scores[rows] = next_scores.view(-1)
            src_rows = next_src.view(-1)
            new_seqs[rows] = group_ids[src_rows]
            current[rows] = next_tokens.view(-1)
            reorder[rows] = nb * (src_rows // size) + start + (src_rows % size)
        if processed is not None:
            record.scores.append(processed)  # type: ignore[union-attr]
        seqs = torch.cat([new_seqs, current[:, None]], dim=1)
        cur += 1
        stopped = cur >= max_length
        if criteria and not stopped:
            recorded = (
                tuple(record.scores) if record is not None and record.scores is not None else None
            )
            stopped = bool(criteria(seqs, recorded).all())
        if all(done) or stopped:
            break
        cache.reorder(reorder)
        if mask_buf is not None:
            step_mask, pos = mask_buf[:, :cur], positions + (cur - 1 - T)
        else:
            step_mask = pos = None
        out = model(
            input_ids=current[:, None],
            attention_mask=step_mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **extra_kwargs,
            **call_kwargs,
        )

    # Open beams of unfinished (prompt, group)s join their finished hypotheses.
    for h in range(B * groups):
        if done[h]:
            continue
        b, g = divmod(h, groups)
        for i in range(size):
            row = b * nb + g * size + i
            hyps[h].add(seqs[row], float(beam_scores[row]), seqs.shape[1] - T)
    n = cfg.num_return_sequences
    best: list[torch.Tensor] = []
    best_scores = torch.zeros(B * n, device=device)
    for b in range(B):
        ranked = sorted(
            (beam for hyp in hyps[b * groups : (b + 1) * groups] for beam in hyp.beams),
            key=lambda x: x[0],
        )
        for j in range(n):
            score, hyp = ranked.pop()
            best.append(hyp)
            best_scores[b * n + j] = score
    lengths = [len(h) for h in best]
    # Room for one EOS after the longest, as `finalize` leaves (none without an EOS id).
    width = min(max(lengths) + 1, max_length) if eos else max(lengths)
    decoded = torch.full((B * n, width), fill, dtype=torch.long, device=device)
    for i, hyp in enumerate(best):
        decoded[i, : lengths[i]] = hyp
        if lengths[i] < width and eos:
            decoded[i, lengths[i]] = eos[0]
    if record is not None:
        if record.scores is not None:
            record.sequences_scores = best_scores
        record.past_key_values = cache
    return decoded


def _rows(processors: Sequence[LogitsProcessor], rows: torch.Tensor) -> Sequence[LogitsProcessor]:
    """`processors` for a group's rows (per-row state selected; unknown ones as they are)."""
    return select_processors(processors, rows) or processors
