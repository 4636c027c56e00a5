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
mask buffer and the next positions directly.

Finished rows. Greedy / sampling with an EOS id (rows stopped by EOS or a stop string
are filled with pads) stop computing rows that have finished: once at least a quarter of the rows still computed (and one) are done, the
batch is compacted (cache rows, mask buffer, positions, per-row processor state and
encoder states selected with one `index_select` each) and results keep going into the
full-size output by row index. Compacting at a quarter bounds the copies (each costs
about one step's cache traffic) to a few per run while the model stops paying for rows
that only produce pads. The tokens are exactly those of the uncompacted loop: sampling
draws the `Exp(1)` noise of `torch.multinomial` for the whole batch (see `_sample_rows`).
Compaction is off when `output_scores` / `output_logits` need every row's scores or a
user `logits_processor` may keep per-row state.

Context overflow. `context_overflow="slide"` lets prompt + new tokens exceed
`n_positions`: GPT-2's positions are absolute and baked into the cached keys, so the
cache cannot be shifted; when it is full, the last `n_positions - slide_stride` tokens
are re-encoded from scratch (a fresh prefill, positions from 0), which leaves room for
`slide_stride` more tokens before the next re-encode. `slide_stride` (default
`n_positions // 4`) trades context for speed: a re-encode of `n_positions - stride`
tokens every `stride + 1` new tokens, so a quarter keeps at least 3/4 of the window as
context for every token at under 3 prefill tokens per new token, while re-encoding every
step (stride 1, the most context) would cost a whole window per token. In a left-padded
batch the window counts columns, so a short prompt's row slides with the longest one.

Semantics follow `transformers.generate` (same processors in the same order, same
stopping rules, same vectorized beam search), so greedy and beam search return the same
ids as `transformers` on the same checkpoint. Sampling draws from the same distribution;
with the same seed it draws the same tokens as `transformers` unless a top-k warper is on
and the model runs on CPU: there the draw runs over the k candidates only (`_sample`), a
different random stream (same seed, same tokens from gpt2kit every run).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from ..decode import cpu_decoder
from ..models.cache import KVCache
from ..models.outputs import ModelOutput
from .compiled import select_decoder
from .config import GenerationConfig
from .processors import (
    LogitNormalization,
    LogitsProcessor,
    MinLengthLogitsProcessor,
    MinNewTokensLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    apply_processors,
    build_processors,
)
from .stopping import StopStringMatcher

_FIELDS = {f.name for f in fields(GenerationConfig)} - {"extra"}

CONTEXT_OVERFLOW = ("error", "slide")

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
    LogitNormalization,
    MinLengthLogitsProcessor,
    MinNewTokensLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)


@dataclass
class GenerateOutput(ModelOutput):
    """What `generate(..., return_dict_in_generate=True)` returns; `transformers`' fields.

    Like `transformers`' `GenerateDecoderOnlyOutput` / `GenerateBeamDecoderOnlyOutput`
    (it indexes as a tuple of its non-None fields, `out[0]` is `sequences`), so code that
    reads `out.sequences`, `out.scores` or `compute_transition_scores`-style math keeps
    working.

    Attributes:
        sequences: `[B * num_return_sequences, T + new]`, the ids `generate` returns otherwise.
        sequences_scores: beam search with `output_scores`: `[B * num_return_sequences]`, each
            returned hypothesis' score (sum of token log-probs / `new_len ** length_penalty`).
        scores: with `output_scores`, one `[N, V]` tensor per step, the scores the token was
            picked from: greedy / sampling the logits after every processor and warper;
            beam search the log-softmax after the processors, before the beam's running
            score is added. N is the number of rows decoded (`B * num_return_sequences`,
            or `B * num_beams`); finished rows keep their (unused) scores.
        logits: with `output_logits`, the raw float32 logits `[N, V]` of every step.
        beam_indices: beam search: `[B * num_return_sequences, new]`, for each new token the
            row (of the `B * num_beams` decoded) it was appended to; -1 after a hypothesis
            ended.

    Example:
        >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
        >>> out = generate(model, torch.tensor([[1, 2]]), max_new_tokens=3, eos_token_id=None,
        ...                return_dict_in_generate=True, output_scores=True)
        >>> out.sequences.shape, len(out.scores), out.scores[0].shape
        (torch.Size([1, 5]), 3, torch.Size([1, 50]))
    """

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None


class _Record:
    """What `return_dict_in_generate` asks the decoding loops to keep."""

    def __init__(self, scores: bool, logits: bool) -> None:
        self.scores: list[torch.Tensor] | None = [] if scores else None
        self.logits: list[torch.Tensor] | None = [] if logits else None
        self.sequences_scores: torch.Tensor | None = None
        self.beam_indices: torch.Tensor | None = None

    def output(self, sequences: torch.Tensor) -> GenerateOutput:
        return GenerateOutput(
            sequences=sequences,
            sequences_scores=self.sequences_scores,
            scores=tuple(self.scores) if self.scores is not None else None,
            logits=tuple(self.logits) if self.logits is not None else None,
            beam_indices=self.beam_indices,
        )


def _slide_stride(cfg: GenerationConfig, n_positions: int) -> int:
    """Tokens decoded between two re-encodes under `context_overflow="slide"`."""
    return cfg.slide_stride if cfg.slide_stride is not None else max(1, n_positions // 4)


def _select_processors(
    processors: Sequence[LogitsProcessor], index: torch.Tensor | None
) -> list[LogitsProcessor] | None:
    """`processors` for the rows `index` of the batch; None if one may keep per-row state.

    `index=None` only checks. The repetition penalty holds each row's left-padding length;
    everything else built in is row-free. A user processor is unknown: None.
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


def _sample(
    scores: torch.Tensor,
    n_rows: int,
    rows: torch.Tensor | None,
    generator: torch.Generator | None,
    top_k: int | None,
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
    if top_k is not None and top_k < scores.shape[-1]:
        values, index = scores.topk(top_k + 1)
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
    if cfg.context_overflow not in CONTEXT_OVERFLOW:
        raise ValueError(
            f'context_overflow must be "error" or "slide", got {cfg.context_overflow!r}; '
            '"slide" re-encodes the last tokens when prompt + new tokens outgrow n_positions'
        )
    if cfg.slide_stride is not None and (
        not isinstance(cfg.slide_stride, int)
        or isinstance(cfg.slide_stride, bool)
        or cfg.slide_stride < 1
    ):
        raise ValueError(
            f"slide_stride must be an int >= 1 (or None for n_positions // 4), got {cfg.slide_stride!r}"
        )
    for name in ("return_dict_in_generate", "output_scores", "output_logits"):
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(cfg, name)!r}")


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


class _Plan(NamedTuple):
    inputs: _Inputs
    generator: torch.Generator | None
    eos: list[int]
    pad: int | None
    max_new: int


def _plan(
    model: Any,
    cfg: GenerationConfig,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    seed: int | None,
    generator: torch.Generator | None,
    batch_hint: int | None = None,
) -> _Plan:
    """What `generate` and `stream_generate` check and derive before decoding: options,
    the RNG, special tokens, left-padded inputs and the number of new tokens."""
    _validate(cfg)
    if seed is not None and generator is not None:
        raise ValueError("pass seed or generator, not both")
    device = model.device
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    eos = _as_list(cfg.eos_token_id)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else (eos[0] if eos else None)
    inputs = _prepare_inputs(input_ids, attention_mask, cfg, eos, pad, device, batch_hint)
    T = inputs.ids.shape[1]
    max_new = cfg.max_new_tokens if cfg.max_new_tokens is not None else cfg.max_length - T
    if max_new < 1:
        raise ValueError(
            f"max_length={cfg.max_length} leaves no room after the {T}-token prompt; pass max_new_tokens=..."
        )
    n_positions = model.config.n_positions
    if cfg.context_overflow == "error" and T + max_new > n_positions:
        fix = (
            f"lower max_new_tokens or truncate the prompt to its last {n_positions - max_new} tokens"
            if max_new < n_positions
            else f"lower max_new_tokens below {n_positions}"
        )
        raise ValueError(
            f"prompt ({T} tokens) + max_new_tokens ({max_new}) = {T + max_new} exceeds the model's "
            f'{n_positions} positions (n_positions); {fix} (or pass context_overflow="slide")'
        )
    if cfg.context_overflow == "slide" and _slide_stride(cfg, n_positions) >= n_positions:
        raise ValueError(
            f"slide_stride ({cfg.slide_stride}) must be below n_positions ({n_positions}): each "
            "re-encode keeps n_positions - slide_stride tokens of context"
        )
    return _Plan(inputs, generator, eos, pad, max_new)


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
) -> torch.Tensor | GenerateOutput:
    """Continue each prompt; returns `[B * num_return_sequences, T + new]` token ids.

    With `return_dict_in_generate=True` it returns a `GenerateOutput` instead: the same ids
    as `sequences`, plus per-step `scores` (`output_scores=True`) and raw `logits`
    (`output_logits=True`), and for beam search `sequences_scores` and `beam_indices`.

    Prompt + new tokens must fit `n_positions` unless `context_overflow="slide"`: then a
    prompt longer than the window is read from its last `n_positions` tokens, and whenever
    the window fills, the last `n_positions - slide_stride` tokens are re-encoded (see the
    module docstring); the output still holds the whole prompt and every new token.

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
            `num_beams`, `eos_token_id`, `stop_strings`, `return_dict_in_generate`,
            `output_scores`, `output_logits`, `context_overflow`, `slide_stride`, ...).

    Example:
        >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
        >>> out = generate(model, torch.tensor([[1, 2, 3]]), max_new_tokens=4, eos_token_id=None)
        >>> out.shape
        torch.Size([1, 7])
    """
    cfg = resolve_config(model, generation_config, overrides)
    batch_hint = encoder_hidden_states.shape[0] if encoder_hidden_states is not None else None
    plan = _plan(model, cfg, input_ids, attention_mask, seed, generator, batch_hint)
    inputs, generator, eos, pad, max_new = (
        plan.inputs,
        plan.generator,
        plan.eos,
        plan.pad,
        plan.max_new,
    )
    device = inputs.ids.device
    B, T = inputs.ids.shape
    record = _Record(cfg.output_scores, cfg.output_logits) if cfg.return_dict_in_generate else None

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

    # cache_implementation="static": a fixed-shape, compiled step stands in for the model;
    # else on CPU, the decoder of `gpt2kit.decode` (native kernels, packed weights).
    decoder = select_decoder(model, cfg, ids.shape[0], T + max_new, beams, extra_kwargs)
    if decoder is model:
        decoder = cpu_decoder(model, ids.shape[0]) or model
    # no_grad, not inference_mode: the returned ids must stay usable as ordinary tensors
    # (e.g. as training inputs, where inference tensors cannot be saved for backward).
    with torch.no_grad():
        if beams:
            seqs = _beam_search(
                decoder,
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
                record=record,
            )
            return record.output(seqs) if record is not None else seqs
        if streamer is not None:
            streamer.put(ids.cpu())
        steps = decode_steps(
            decoder,
            ids,
            mask,
            cfg,
            processors,
            eos,
            pad,
            max_new,
            stop,
            generator,
            extra_kwargs,
            record=record,
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
        return record.output(out) if record is not None else out


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
    *,
    record: _Record | None = None,
) -> Iterator[torch.Tensor]:
    """Greedy / sampling loop as a generator: yields each step's tokens `[N]`, returns all ids.

    A generator so `stream_generate` can hand out text between steps (and stop early by
    closing it) without a thread. Finished rows are dropped from the computed batch
    (`rows` maps computed rows to output rows) and `context_overflow="slide"` re-encodes
    the window when the cache is full (module docstring); `record` collects the per-step
    scores / logits of `return_dict_in_generate`.
    """
    N, T = ids.shape
    device = ids.device
    total = T + max_new
    n_pos = model.config.n_positions
    slide = cfg.context_overflow == "slide"
    window = n_pos - _slide_stride(cfg, n_pos)  # columns a re-encode keeps
    tokens = torch.full((N, total), pad if pad is not None else 0, dtype=torch.long, device=device)
    tokens[:, :T] = ids
    # The cache holds token columns base .. base + cache.length (base > 0 only when sliding).
    base = max(0, T - n_pos) if slide else 0
    cache = KVCache(model.config.n_layer, capacity=min(total - base, n_pos))
    mask_buf = pos_next = None
    pos_col = T
    if mask is not None:
        mask_buf = torch.ones(N, total, dtype=torch.bool, device=device)
        mask_buf[:, :T] = mask
    eos_t = torch.tensor(eos, device=device) if eos else None
    pad_t = torch.tensor(pad if pad is not None else 0, device=device)
    live = torch.ones(N, dtype=torch.bool, device=device)  # per computed row
    sample = cfg.do_sample
    # On CPU, sample among the top-k warper's survivors only (see `_sample`).
    candidates = (
        next((p.top_k for p in processors if type(p) is TopKLogitsWarper), None)
        if device.type == "cpu"
        else None
    )
    rows: torch.Tensor | None = None  # output row of each computed row; None: all, in order
    compact = (
        _COMPACT_FRACTION is not None
        and N > 1
        and eos_t is not None  # without EOS, finished rows keep their tokens (transformers)
        and (record is None or (record.scores is None and record.logits is None))
        and _select_processors(processors, None) is not None
        and not getattr(model, "fixed_batch", False)  # a static decoder keeps its shape
    )

    overlap = (
        _LiveFlag(device)
        if device.type in _OVERLAP_DEVICES and eos_t is not None and stop is None and not compact
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
        )

    # Grad mode is thread-local state: set it around each step's compute, never across a
    # `yield`, so the consumer's code between steps runs in its own mode.
    with torch.no_grad():
        out = encode(base, T)
    cur = T
    while True:
        with torch.no_grad():
            logits = out.logits[:, -1].float()
            if record is not None and record.logits is not None:
                record.logits.append(logits.clone())
            scores = logits
            if processors:
                seen = tokens[:, :cur] if rows is None else tokens[rows, :cur]
                scores = apply_processors(processors, seen, scores)
            if record is not None and record.scores is not None:
                record.scores.append(scores)
            if sample:
                nxt = _sample(scores, N, rows, generator, candidates)
            else:
                nxt = scores.argmax(-1)
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
        yield nxt if rows is None else tokens[:, cur - 1]
        if cur == total:
            break
        if overlap is not None:
            overlap.start(live)  # read back after the next step is queued (see _LiveFlag)
        elif eos_t is not None or stop is not None:
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
                processors = _select_processors(processors, keep)  # type: ignore[assignment]
                extra_kwargs = {k: v.index_select(0, keep) for k, v in extra_kwargs.items()}
        with torch.no_grad():
            if slide and cur - base > n_pos:
                # The cache is full: re-encode the last `window` columns, fresh positions.
                if overlap is not None and not overlap.any_live():
                    break
                base = cur - window
                cache.crop(0)
                out = encode(base, cur)
                continue
            if mask_buf is not None:
                step_mask, pos = mask_buf[:, base:cur], pos_next + (cur - 1 - pos_col)
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
            )
        if overlap is not None and not overlap.any_live():
            break  # every row had finished: the step just queued is discarded
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
    *,
    record: _Record | None = None,
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
    the running beams' last tokens when the cache is full, as `decode_steps` does.
    """
    nb = cfg.num_beams
    N, T = ids.shape
    B = N // nb
    device = ids.device
    n_pos = model.config.n_positions
    slide = cfg.context_overflow == "slide"
    window = n_pos - _slide_stride(cfg, n_pos)
    base = max(0, T - n_pos) if slide else 0  # first token column held in the cache
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

    cache = KVCache(model.config.n_layer, capacity=min(max_length - base, n_pos))
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
    )
    flat = ids
    cur = T
    while True:
        logits = out.logits[:, -1].float()
        logp = F.log_softmax(logits, dim=-1)
        if processors:
            logp = apply_processors(processors, flat, logp)
        if record is not None:
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
        if slide and cur - base > n_pos:
            # The cache is full: re-encode the running beams' last `window` tokens.
            base = cur - window
            cache.crop(0)
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
        )

    n = cfg.num_return_sequences
    seqs = sequences[:, :n].reshape(B * n, max_length)
    new = int(beam_lengths[:, :n].max())
    if record is not None:
        if record.scores is not None:
            record.sequences_scores = beam_scores[:, :n].reshape(B * n)
        record.beam_indices = beam_idx[:, :n].reshape(B * n, max_length - T)[:, :new]
    return seqs[:, : T + new]
