"""`generate`: checks the call, builds the step function, runs one decoding strategy.

The parts live beside this file: `inputs.py` (config resolution, option checks, the
left-padded prompt batch), `sampling.py` (greedy / sampling loop), `beam.py` (beam
search, beam sampling, diverse beam search), `contrastive.py` (contrastive search),
`assisted.py` (assisted and prompt-lookup decoding), `window.py` (the sliding window of
`context_overflow="slide"`), `outputs.py` (`GenerateOutput`). `build_decoder` below is the
one place that chooses what the loops call as "the model".

Semantics follow `transformers.generate` (same processors in the same order, same
stopping rules, same vectorized beam search), so greedy and beam search return the same
ids as `transformers` on the same checkpoint; see `docs/migrating-generate.md`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..decode import cpu_decoder
from .assisted import assisted_decoding
from .beam import beam_search, group_beam_search
from .compiled import select_decoder
from .config import GenerationConfig
from .contrastive import contrastive_search
from .inputs import as_list, plan, resolve_config
from .outputs import GenerateOutput, Record
from .processors import LogitsProcessor, build_processors
from .sampling import decode_steps, sample
from .setup import DecodeSetup
from .stopping import MaxTimeCriteria, StoppingCriteriaList, StopStringMatcher

# Names other modules (and older code) import from here.
_as_list, _plan, _sample, _beam_search = as_list, plan, sample, beam_search
__all__ = ["GenerateOutput", "build_decoder", "decode_steps", "generate", "resolve_config"]


def build_decoder(
    model: Any,
    cfg: GenerationConfig,
    rows: int,
    total: int,
    extra_kwargs: dict[str, Any],
    *,
    beams: bool = False,
    plain: bool = False,
) -> Any:
    """THE place that builds what a decoding loop calls where it would call the model.

    `cache_implementation="static"`: a fixed-shape, compiled step (`compiled.py`); else on
    CPU the decoder of `gpt2kit.decode` (`cpu_decoder`: native kernels, packed weights),
    which falls back to the model's own forward for calls it cannot run (per-layer
    outputs, cross-attention it does not plan). `plain=True` (strategies that crop or
    re-read the cache or need hidden states: contrastive, assisted) takes the dynamic
    path: the static step is not used there and a `cache_implementation="static"` call
    says so in an error rather than decoding another way.
    """
    if plain:
        if cfg.cache_implementation == "static":
            raise ValueError(
                "cache_implementation='static' supports greedy, sampling and beam search; "
                "contrastive search, assisted and prompt-lookup decoding need "
                "cache_implementation=None"
            )
        return cpu_decoder(model, rows) or model
    decoder = select_decoder(model, cfg, rows, total, beams, extra_kwargs)
    if decoder is model:
        decoder = cpu_decoder(model, rows) or model
    return decoder


def generation_mode(cfg: GenerationConfig, assistant_model: Any) -> str:
    """Which strategy `cfg` asks for, by `transformers`' rules."""
    if assistant_model is not None or cfg.prompt_lookup_num_tokens is not None:
        return "assisted"
    if (
        not cfg.do_sample
        and cfg.num_beams == 1
        and cfg.penalty_alpha is not None
        and cfg.penalty_alpha > 0
        and cfg.top_k is not None
        and cfg.top_k > 1
    ):
        return "contrastive"
    if cfg.num_beams > 1:
        return "group_beam" if cfg.num_beam_groups > 1 else "beam"
    return "sample"


def build_criteria(
    cfg: GenerationConfig, extra: Sequence[Any] | None
) -> StoppingCriteriaList | None:
    """`max_time` and the user's criteria as one list (None when there are none)."""
    out = StoppingCriteriaList()
    if cfg.max_time is not None:
        out.append(MaxTimeCriteria(cfg.max_time))
    if extra:
        for c in extra:
            if not callable(c):
                raise ValueError(
                    f"stopping_criteria must hold callables (input_ids, scores) -> bool tensor, got {c!r}"
                )
            out.append(c)
    return out or None


def generate(
    model: Any,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    generation_config: Any = None,
    *,
    streamer: Any = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    encoder_hidden_states: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    tokenizer: Any = None,
    logits_processor: Sequence[LogitsProcessor] = (),
    stopping_criteria: Sequence[Any] | None = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
    assistant_model: Any = None,
    **overrides: Any,
) -> torch.Tensor | GenerateOutput:
    """Continue each prompt; returns `[B * num_return_sequences, T + new]` token ids.

    With `return_dict_in_generate=True` it returns a `GenerateOutput` instead: the same ids
    as `sequences`, plus per-step `scores` (`output_scores=True`), raw `logits`
    (`output_logits=True`), `attentions` / `hidden_states` (`output_attentions=True`,
    `output_hidden_states=True`), the final `past_key_values`, and for beam search
    `sequences_scores` and `beam_indices`.

    Strategy, by `transformers`' rules: `assistant_model=` or `prompt_lookup_num_tokens`:
    assisted decoding (greedy; the ids greedy decoding gives); `penalty_alpha > 0` with
    `top_k > 1`: contrastive search; `num_beams > 1`: beam search (`num_beam_groups > 1`:
    diverse beam search with `diversity_penalty`); else greedy or sampling (`do_sample`).

    Prompt + new tokens must fit `n_positions` unless `context_overflow="slide"`: then a
    prompt longer than the window is read from its last `n_positions` tokens, and whenever
    the window fills, the last `n_positions - slide_stride` tokens are re-encoded (see
    `window.py`); the output still holds the whole prompt and every new token.

    Args:
        model: any gpt2kit model with an LM head (`GPT2LMHeadModel`, `GPT2ForCausalLM`,
            `GPT2DoubleHeadsModel`, the sequence-to-sequence models).
        input_ids: `[B, T]` prompts (or `[T]`; a tensor or nested lists of ints); None or
            empty starts from `bos_token_id`.
        attention_mask: `[B, T]`, 1 = real token; left, right or any padding.
        generation_config: gpt2kit's or `transformers`' `GenerationConfig` (or a dict);
            defaults to `model.generation_config`, else the defaults with the model
            config's special tokens.
        streamer: object with `put(ids)` / `end()` (e.g. `TextStreamer`); batch 1, greedy or sampling.
        generator: `torch.Generator` for sampling; `seed` (an int in 0..2**64-1) builds one.
            Neither: torch's global RNG.
        encoder_hidden_states: `[B, S, d]` for cross-attention models, passed to every step
            (expanded for beams / return sequences); `encoder_attention_mask` `[B, S]`.
        tokenizer: needed by `stop_strings`.
        logits_processor: extra `(ids, scores) -> scores` callables, run after the built-in
            penalties and constraints and before the sampling warpers.
        stopping_criteria: extra `(ids, scores) -> [N] bool` callables (`transformers`'
            `StoppingCriteriaList` works), asked after every token; a row they stop is
            finished like one that produced EOS.
        prefix_allowed_tokens_fn: `(batch_id, ids) -> allowed token ids` for the next token.
        assistant_model: a smaller model with the same vocabulary that drafts tokens for
            assisted decoding.
        **overrides: any `GenerationConfig` field (`max_new_tokens`, `do_sample`, `top_k`,
            `num_beams`, `eos_token_id`, `stop_strings`, `max_time`, `suppress_tokens`,
            `sequence_bias`, `penalty_alpha`, `num_beam_groups`, `diversity_penalty`,
            `prompt_lookup_num_tokens`, `return_dict_in_generate`, `output_scores`,
            `context_overflow`, `slide_stride`, ...). Anything else is an error naming it.

    Example:
        >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
        >>> out = generate(model, torch.tensor([[1, 2, 3]]), max_new_tokens=4, eos_token_id=None)
        >>> out.shape
        torch.Size([1, 7])
    """
    started = time.time()
    cfg = resolve_config(model, generation_config, overrides)
    batch_hint = encoder_hidden_states.shape[0] if encoder_hidden_states is not None else None
    p = plan(model, cfg, input_ids, attention_mask, seed, generator, batch_hint)
    inputs, generator, eos, pad, max_new = p.inputs, p.generator, p.eos, p.pad, p.max_new
    device = inputs.ids.device
    B, T = inputs.ids.shape
    record = (
        Record(
            cfg.output_scores,
            cfg.output_logits,
            cfg.output_attentions,
            cfg.output_hidden_states,
            past_key_values=True,
        )
        if cfg.return_dict_in_generate
        else None
    )
    mode = generation_mode(cfg, assistant_model)
    beams = mode in ("beam", "group_beam")
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
        max_length=T + max_new,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
        # (diverse beam search runs the processors per group of num_beams / num_beam_groups)
        rows_per_prompt=expand if mode != "group_beam" else cfg.num_beams // cfg.num_beam_groups,
    )
    stop = StopStringMatcher(cfg.stop_strings, tokenizer) if cfg.stop_strings else None
    criteria = build_criteria(cfg, stopping_criteria)
    if criteria is not None and cfg.max_time is not None:
        criteria[0].initial_timestamp = started  # the clock runs from the call, as in transformers
    if streamer is not None and (mode != "sample" or ids.shape[0] != 1):
        raise ValueError(
            "streamer supports batch 1 with greedy decoding or sampling; drop streamer= or "
            "num_beams / penalty_alpha / assistant_model"
        )
    if record is not None and record.model_kwargs() and cfg.cache_implementation == "static":
        raise ValueError(
            "output_attentions / output_hidden_states need the model's own forward: "
            "pass cache_implementation=None"
        )

    # no_grad, not inference_mode: the returned ids must stay usable as ordinary tensors
    # (e.g. as training inputs, where inference tensors cannot be saved for backward).
    with torch.no_grad():
        setup = DecodeSetup(
            cfg, processors, eos, pad, max_new, stop, generator, extra_kwargs, record, criteria
        )
        width = ids.shape[0]
        if mode == "beam" or mode == "group_beam":
            decoder = build_decoder(model, cfg, width, T + max_new, extra_kwargs, beams=True)
            search = beam_search if mode == "beam" else group_beam_search
            seqs = search(decoder, ids, mask, setup)
            return record.output(seqs) if record is not None else seqs
        if mode == "contrastive":
            decoder = build_decoder(model, cfg, width, T + max_new, extra_kwargs, plain=True)
            seqs = contrastive_search(decoder, ids, mask, setup)
            return record.output(seqs) if record is not None else seqs
        if mode == "assisted":
            decoder = build_decoder(model, cfg, width, T + max_new, extra_kwargs, plain=True)
            seqs = assisted_decoding(decoder, assistant_model, ids, mask, setup)
            return record.output(seqs) if record is not None else seqs
        decoder = build_decoder(model, cfg, width, T + max_new, extra_kwargs)
        if streamer is not None:
            streamer.put(ids.cpu())
        steps = decode_steps(decoder, ids, mask, setup)
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
        return record.output(out) if record is not None else out
