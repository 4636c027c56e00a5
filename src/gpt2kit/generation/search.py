"""`generate`: greedy, sampling and beam search over a preallocated KV cache.

Layout. Prompts are decoded left-padded: a right-padded (or any) batch is rearranged so
each row's real tokens end at the last column, positions come from the attention mask,
and every row gives the tokens its prompt gives alone. The returned ids are in that
left-padded layout: `out[:, :T]` is the prompt (pads first), `out[:, T:]` the new tokens,
with finished rows filled with `pad_token_id` (as `transformers` returns them).

Speed. The cache holds prompt + max_new_tokens from the start (one allocation); each
step feeds one token per row and asks for the last position's logits only
(`logits_to_keep=1`). Without padding the step passes `attention_mask=None`, the
backbone's plain-causal fast path; with padding it passes a view of one preallocated
mask buffer and the next positions directly. Finished rows keep decoding (their tokens
are replaced by pads): dropping them would reallocate the cache mid-loop, which costs
more than the rows it saves at the batch sizes this targets.

Semantics follow `transformers.generate` (same processors in the same order, same
stopping rules, same vectorized beam search), so greedy and beam search return the same
ids as `transformers` on the same checkpoint, and sampling with the same seed draws the
same tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import Any

import torch
import torch.nn.functional as F

from ..models.cache import KVCache
from .config import GenerationConfig
from .processors import LogitsProcessor, apply_processors, build_processors
from .stopping import StopStringMatcher

_FIELDS = {f.name for f in fields(GenerationConfig)} - {"extra"}


def _as_list(ids: int | Sequence[int] | torch.Tensor | None) -> list[int]:
    if ids is None:
        return []
    if isinstance(ids, torch.Tensor):
        return [int(i) for i in ids.flatten().tolist()]
    return [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]


def resolve_config(
    model: Any, generation_config: GenerationConfig | None, overrides: dict[str, Any]
) -> GenerationConfig:
    """The call's config: `generation_config` or the model's, with `overrides` applied and checked."""
    unknown = sorted(k for k in overrides if k not in _FIELDS)
    if unknown:
        raise ValueError(
            f"generate() got unknown option(s) {', '.join(unknown)}; valid options are the "
            f"GenerationConfig fields: {', '.join(sorted(_FIELDS))}"
        )
    base = generation_config or getattr(model, "generation_config", None)
    cfg = (
        base.copy(**overrides)
        if base is not None
        else GenerationConfig.from_model_config(model.config).update(**overrides)
    )
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(cfg, name) is None and name not in overrides:
            setattr(cfg, name, getattr(model.config, name, None))
    return cfg


def _validate(cfg: GenerationConfig) -> None:
    if not isinstance(cfg.num_beams, int) or cfg.num_beams < 1:
        raise ValueError(f"num_beams must be an int >= 1, got {cfg.num_beams!r}")
    n = cfg.num_return_sequences
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"num_return_sequences must be an int >= 1, got {n!r}")
    if cfg.num_beams > 1 and n > cfg.num_beams:
        raise ValueError(
            f"num_return_sequences ({n}) cannot exceed num_beams ({cfg.num_beams}) in beam search; "
            "raise num_beams or lower num_return_sequences"
        )
    if cfg.num_beams == 1 and not cfg.do_sample and n > 1:
        raise ValueError(
            f"greedy decoding returns one sequence per prompt, got num_return_sequences={n}; "
            "pass do_sample=True or num_beams >= num_return_sequences"
        )
    if cfg.do_sample and (not isinstance(cfg.temperature, (int, float)) or cfg.temperature <= 0):
        raise ValueError(
            f"temperature must be > 0 when do_sample=True, got {cfg.temperature!r}; "
            "for the most likely token pass do_sample=False"
        )
    if cfg.top_p is not None and not 0.0 < float(cfg.top_p) <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {cfg.top_p}")
    if cfg.top_k is not None and (not isinstance(cfg.top_k, int) or cfg.top_k < 0):
        raise ValueError(f"top_k must be an int >= 0 (0 disables it), got {cfg.top_k!r}")
    if cfg.typical_p is not None and not 0.0 < float(cfg.typical_p) <= 1.0:
        raise ValueError(f"typical_p must be in (0, 1], got {cfg.typical_p}")
    if cfg.min_p is not None and not 0.0 <= float(cfg.min_p) <= 1.0:
        raise ValueError(f"min_p must be in [0, 1], got {cfg.min_p}")
    if cfg.early_stopping not in (True, False, "never"):
        raise ValueError(
            f'early_stopping must be True, False or "never", got {cfg.early_stopping!r}'
        )
    if cfg.max_new_tokens is not None and (
        not isinstance(cfg.max_new_tokens, int) or cfg.max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be an int >= 1, got {cfg.max_new_tokens!r}")


class _Inputs:
    """Prompt batch in the internal layout: left-padded ids, mask (None without padding)."""

    def __init__(
        self, ids: torch.Tensor, mask: torch.Tensor | None, pad_lengths: torch.Tensor | None
    ):
        self.ids, self.mask, self.pad_lengths = ids, mask, pad_lengths


def _prepare_inputs(
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    cfg: GenerationConfig,
    eos: list[int],
    pad: int | None,
    device: torch.device,
    batch_hint: int | None,
) -> _Inputs:
    if input_ids is not None and not isinstance(input_ids, torch.Tensor):
        input_ids = torch.as_tensor(input_ids, dtype=torch.long)
    if input_ids is not None and input_ids.dim() == 1:
        input_ids = input_ids[None]
        attention_mask = (
            attention_mask[None]
            if attention_mask is not None and attention_mask.dim() == 1
            else attention_mask
        )
    if input_ids is None or input_ids.shape[-1] == 0:
        # An empty prompt starts from BOS (GPT-2's <|endoftext|>), as the model was trained.
        if cfg.bos_token_id is None:
            raise ValueError(
                "the prompt is empty and bos_token_id is unset; pass input_ids or bos_token_id=..."
            )
        B = input_ids.shape[0] if input_ids is not None else (batch_hint or 1)
        return _Inputs(
            torch.full((max(B, 1), 1), cfg.bos_token_id, dtype=torch.long, device=device),
            None,
            None,
        )
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, tokens], got shape {tuple(input_ids.shape)}")
    ids = input_ids.to(device=device, dtype=torch.long)
    if attention_mask is None and pad is not None and pad not in eos and bool((ids == pad).any()):
        # Same inference as `transformers`: a pad id that is not EOS marks padding.
        attention_mask = ids != pad
    if attention_mask is None:
        return _Inputs(ids, None, None)
    mask = attention_mask.to(device).bool()
    if mask.shape != ids.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(mask.shape)} but input_ids has {tuple(ids.shape)}; they must match"
        )
    if bool(mask.all()):
        return _Inputs(ids, None, None)
    if bool((mask.sum(1) == 0).any()):
        raise ValueError(
            "a row of attention_mask is all zeros (an empty prompt in a batch); give it a token (e.g. BOS)"
        )
    # Stable sort on the mask moves pads to the front, real tokens keep their order: left padding.
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    mask = mask.gather(1, order)
    ids = ids.gather(1, order).masked_fill(~mask, pad if pad is not None else 0)
    return _Inputs(ids, mask, (~mask).sum(1))


def generate(
    model: Any,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    generation_config: GenerationConfig | None = None,
    *,
    streamer: Any = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    encoder_hidden_states: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    tokenizer: Any = None,
    logits_processor: Sequence[LogitsProcessor] = (),
    **overrides: Any,
) -> torch.Tensor:
    """Continue each prompt; returns `[B * num_return_sequences, T + new]` token ids.

    Args:
        model: any gpt2kit model with an LM head (`GPT2LMHeadModel`, `GPT2ForCausalLM`,
            `GPT2DoubleHeadsModel`, the sequence-to-sequence models).
        input_ids: `[B, T]` prompts (or `[T]`); None or empty starts from `bos_token_id`.
        attention_mask: `[B, T]`, 1 = real token; left, right or any padding.
        generation_config: defaults to `model.generation_config`, else the defaults with the
            model config's special tokens.
        streamer: object with `put(ids)` / `end()` (e.g. `TextStreamer`); batch 1, no beams.
        generator: `torch.Generator` for sampling; `seed` builds one. Neither: torch's global RNG.
        encoder_hidden_states: `[B, S, d]` for cross-attention models, passed to every step
            (expanded for beams / return sequences); `encoder_attention_mask` `[B, S]`.
        tokenizer: needed by `stop_strings`.
        logits_processor: extra `(ids, scores) -> scores` callables, run after the built-in
            penalties and before the sampling warpers.
        **overrides: any `GenerationConfig` field (`max_new_tokens`, `do_sample`, `top_k`,
            `num_beams`, `eos_token_id`, `stop_strings`, ...).

    Example:
        >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
        >>> out = generate(model, torch.tensor([[1, 2, 3]]), max_new_tokens=4, eos_token_id=None)
        >>> out.shape
        torch.Size([1, 7])
    """
    cfg = resolve_config(model, generation_config, overrides)
    _validate(cfg)
    if seed is not None and generator is not None:
        raise ValueError("pass seed or generator, not both")
    device = model.device
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    eos = _as_list(cfg.eos_token_id)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else (eos[0] if eos else None)

    batch_hint = encoder_hidden_states.shape[0] if encoder_hidden_states is not None else None
    inputs = _prepare_inputs(input_ids, attention_mask, cfg, eos, pad, device, batch_hint)
    B, T = inputs.ids.shape
    max_new = cfg.max_new_tokens if cfg.max_new_tokens is not None else cfg.max_length - T
    if max_new < 1:
        raise ValueError(
            f"max_length={cfg.max_length} leaves no room after the {T}-token prompt; pass max_new_tokens=..."
        )
    n_positions = model.config.n_positions
    if T + max_new > n_positions:
        raise ValueError(
            f"prompt ({T} tokens) + max_new_tokens ({max_new}) = {T + max_new} exceeds the model's "
            f"{n_positions} positions (n_positions); lower max_new_tokens or truncate the prompt to "
            f"its last {n_positions - max_new} tokens"
        )

    beams = cfg.num_beams > 1
    expand = cfg.num_beams if beams else cfg.num_return_sequences
    ids, mask, pad_lengths = inputs.ids, inputs.mask, inputs.pad_lengths
    enc, enc_mask = encoder_hidden_states, encoder_attention_mask
    if expand > 1:
        ids = ids.repeat_interleave(expand, 0)
        mask = mask.repeat_interleave(expand, 0) if mask is not None else None
        pad_lengths = pad_lengths.repeat_interleave(expand, 0) if pad_lengths is not None else None
        enc = enc.repeat_interleave(expand, 0) if enc is not None else None
        enc_mask = enc_mask.repeat_interleave(expand, 0) if enc_mask is not None else None
    extra_kwargs: dict[str, Any] = {}
    if enc is not None:
        extra_kwargs["encoder_hidden_states"] = enc.to(device)
        if enc_mask is not None:
            extra_kwargs["encoder_attention_mask"] = enc_mask.to(device)

    processors = build_processors(
        cfg,
        prompt_length=T,
        eos_token_ids=eos,
        pad_lengths=pad_lengths,
        num_beams=cfg.num_beams,
        extra=logits_processor,
    )
    stop = StopStringMatcher(cfg.stop_strings, tokenizer) if cfg.stop_strings else None
    if streamer is not None and (beams or ids.shape[0] != 1):
        raise ValueError(
            "streamer supports batch 1 without beam search; drop streamer= or num_beams"
        )

    # no_grad, not inference_mode: the returned ids must stay usable as ordinary tensors
    # (e.g. as training inputs, where inference tensors cannot be saved for backward).
    with torch.no_grad():
        if beams:
            return _beam_search(
                model,
                ids,
                mask,
                cfg,
                processors,
                eos,
                pad,
                T + max_new,
                stop,
                generator,
                extra_kwargs,
            )
        if streamer is not None:
            streamer.put(ids.cpu())
        steps = decode_steps(
            model, ids, mask, cfg, processors, eos, pad, max_new, stop, generator, extra_kwargs
        )
        try:
            while True:
                tokens = next(steps)
                if streamer is not None:
                    streamer.put(tokens.cpu())
        except StopIteration as done:
            out = done.value
        finally:
            if streamer is not None:
                streamer.end()
        return out


def decode_steps(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    cfg: GenerationConfig,
    processors: Sequence[LogitsProcessor],
    eos: list[int],
    pad: int | None,
    max_new: int,
    stop: StopStringMatcher | None,
    generator: torch.Generator | None,
    extra_kwargs: dict[str, Any],
) -> Iterator[torch.Tensor]:
    """Greedy / sampling loop as a generator: yields each step's tokens `[N]`, returns all ids.

    A generator so `stream_generate` can hand out text between steps (and stop early by
    closing it) without a thread.
    """
    N, T = ids.shape
    device = ids.device
    total = T + max_new
    tokens = torch.full((N, total), pad if pad is not None else 0, dtype=torch.long, device=device)
    tokens[:, :T] = ids
    cache = KVCache(model.config.n_layer, capacity=total)
    mask_buf = positions = None
    if mask is not None:
        mask_buf = torch.ones(N, total, dtype=torch.bool, device=device)
        mask_buf[:, :T] = mask
        positions = mask.sum(1, keepdim=True)  # position of each row's first new token
    eos_t = torch.tensor(eos, device=device) if eos else None
    pad_t = torch.tensor(pad if pad is not None else 0, device=device)
    unfinished = torch.ones(N, dtype=torch.bool, device=device)
    sample = cfg.do_sample

    # Grad mode is thread-local state: set it around each step's compute, never across a
    # `yield`, so the consumer's code between steps runs in its own mode.
    with torch.no_grad():
        out = model(
            input_ids=ids,
            attention_mask=mask,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **extra_kwargs,
        )
    cur = T
    while True:
        with torch.no_grad():
            scores = out.logits[:, -1].float()
            if processors:
                scores = apply_processors(processors, tokens[:, :cur], scores)
            if sample:
                nxt = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
            else:
                nxt = scores.argmax(-1)
            if eos_t is not None:
                nxt = torch.where(unfinished, nxt, pad_t)
            tokens[:, cur] = nxt
            cur += 1
            if eos_t is not None:
                unfinished &= ~torch.isin(nxt, eos_t)
            if stop is not None:
                tail = tokens[:, max(0, cur - stop.longest - 1) : cur].tolist()
                for r in range(N):
                    if tail[r] and stop.hit(tail[r]):
                        unfinished[r] = False
        yield nxt
        if cur == total or ((eos_t is not None or stop is not None) and not bool(unfinished.any())):
            break
        if mask_buf is not None:
            step_mask, pos = mask_buf[:, :cur], positions + (cur - 1 - T)
        else:
            step_mask = pos = None
        with torch.no_grad():
            out = model(
                input_ids=nxt[:, None],
                attention_mask=step_mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                **extra_kwargs,
            )
    return tokens[:, :cur]


def _beam_search(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    cfg: GenerationConfig,
    processors: Sequence[LogitsProcessor],
    eos: list[int],
    pad: int | None,
    max_length: int,
    stop: StopStringMatcher | None,
    generator: torch.Generator | None,
    extra_kwargs: dict[str, Any],
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
    """
    nb = cfg.num_beams
    N, T = ids.shape
    B = N // nb
    device = ids.device
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

    cache = KVCache(model.config.n_layer, capacity=max_length)
    mask_buf = positions = None
    if mask is not None:
        # Rows of one prompt share their mask and running beams never hold pads: no reorder.
        mask_buf = torch.ones(N, max_length, dtype=torch.bool, device=device)
        mask_buf[:, :T] = mask
        positions = mask.sum(1, keepdim=True)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
        **extra_kwargs,
    )
    flat = ids
    cur = T
    while True:
        logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)
        if processors:
            logp = apply_processors(processors, flat, logp)
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

        # Best unfinished continuations keep running.
        run_logp = top_logp + hits.to(torch.float32) * -1.0e9
        nxt = torch.topk(run_logp, k=nb)[1]
        running = cand.gather(1, nxt[:, :, None].expand(B, nb, max_length))
        running_scores = run_logp.gather(1, nxt)
        src_beam = src.gather(1, nxt)

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

        cache.reorder((src_beam + batch_offset).view(-1))
        flat = running[:, :, :cur].reshape(N, cur)
        if mask_buf is not None:
            step_mask, pos = mask_buf[:, :cur], positions + (cur - 1 - T)
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
        )

    n = cfg.num_return_sequences
    seqs = sequences[:, :n].reshape(B * n, max_length)
    return seqs[:, : T + int(beam_lengths[:, :n].max())]
