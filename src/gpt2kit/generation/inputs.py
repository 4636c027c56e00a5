"""What `generate` checks and derives before decoding: the call's config, its options,
the RNG, the special tokens and the prompt batch in the internal (left-padded) layout.

Layout. Prompts are decoded left-padded: a right-padded (or any) batch is rearranged so
each row's real tokens end at the last column, positions come from the attention mask,
and every row gives the tokens its prompt gives alone. The returned ids are in that
left-padded layout: `out[:, :T]` is the prompt (pads first), `out[:, T:]` the new tokens,
with finished rows filled with `pad_token_id` (as `transformers` returns them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any, NamedTuple

import torch

from .config import GenerationConfig
from .window import slide_stride

FIELDS = {f.name for f in fields(GenerationConfig)} - {"extra"}
CONTEXT_OVERFLOW = ("error", "slide")
_SEED_MAX = 2**64 - 1


def as_list(ids: int | Sequence[int] | torch.Tensor | None) -> list[int]:
    """Token id(s) as a list of ints (None: empty)."""
    if ids is None:
        return []
    if isinstance(ids, torch.Tensor):
        return [int(i) for i in ids.flatten().tolist()]
    return [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]


def resolve_config(
    model: Any, generation_config: Any, overrides: dict[str, Any]
) -> GenerationConfig:
    """The call's config: `generation_config` (ours or `transformers'`) or the model's,
    with `overrides` applied and checked."""
    unknown = sorted(k for k in overrides if k not in FIELDS)
    if unknown:
        raise ValueError(
            f"generate() got unknown option(s) {', '.join(unknown)}; valid options are the "
            f"GenerationConfig fields: {', '.join(sorted(FIELDS))}"
        )
    base = generation_config if generation_config is not None else None
    if base is None:
        base = getattr(model, "generation_config", None)
    if base is not None:
        base = GenerationConfig.coerce(base)
    cfg = (
        base.copy(**overrides)
        if base is not None
        else GenerationConfig.from_model_config(model.config).update(**overrides)
    )
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(cfg, name) is None and name not in overrides:
            setattr(cfg, name, getattr(model.config, name, None))
    bad = cfg.unsupported_options()
    if bad:
        raise ValueError(
            f"generation_config sets {', '.join(bad)}, which gpt2kit's generate does not "
            "implement; unset them (or decode with transformers)"
        )
    return cfg


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _token_list(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, (list, tuple)) or any(not _is_int(t) or t < 0 for t in value):
        raise ValueError(f"{name} must be a list of token ids (ints >= 0), got {value!r}")


def validate(cfg: GenerationConfig) -> None:
    """Every option's type and range; the error names the option and the fix."""
    if not _is_int(cfg.num_beams) or cfg.num_beams < 1:
        raise ValueError(f"num_beams must be an int >= 1, got {cfg.num_beams!r}")
    n = cfg.num_return_sequences
    if not _is_int(n) or n < 1:
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
    if cfg.top_k is not None and (not _is_int(cfg.top_k) or cfg.top_k < 0):
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
        not _is_int(cfg.max_new_tokens) or cfg.max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be an int >= 1, got {cfg.max_new_tokens!r}")
    if cfg.min_new_tokens is not None and (
        not _is_int(cfg.min_new_tokens) or cfg.min_new_tokens < 0
    ):
        raise ValueError(f"min_new_tokens must be an int >= 0, got {cfg.min_new_tokens!r}")
    if cfg.context_overflow not in CONTEXT_OVERFLOW:
        raise ValueError(
            f'context_overflow must be "error" or "slide", got {cfg.context_overflow!r}; '
            '"slide" re-encodes the last tokens when prompt + new tokens outgrow n_positions'
        )
    if cfg.slide_stride is not None and (not _is_int(cfg.slide_stride) or cfg.slide_stride < 1):
        raise ValueError(
            f"slide_stride must be an int >= 1 (or None for n_positions // 4), got {cfg.slide_stride!r}"
        )
    for name in (
        "return_dict_in_generate",
        "output_scores",
        "output_logits",
        "output_attentions",
        "output_hidden_states",
    ):
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(cfg, name)!r}")
    if cfg.max_time is not None and (
        not isinstance(cfg.max_time, (int, float))
        or isinstance(cfg.max_time, bool)
        or cfg.max_time <= 0
    ):
        raise ValueError(f"max_time must be a number of seconds > 0, got {cfg.max_time!r}")
    _token_list("suppress_tokens", cfg.suppress_tokens)
    _token_list("begin_suppress_tokens", cfg.begin_suppress_tokens)
    if cfg.forced_bos_token_id is not None and (
        not _is_int(cfg.forced_bos_token_id) or cfg.forced_bos_token_id < 0
    ):
        raise ValueError(f"forced_bos_token_id must be a token id, got {cfg.forced_bos_token_id!r}")
    if cfg.forced_eos_token_id is not None:
        forced = cfg.forced_eos_token_id
        _token_list("forced_eos_token_id", [forced] if _is_int(forced) else forced)
    g = cfg.num_beam_groups
    if not _is_int(g) or g < 1:
        raise ValueError(f"num_beam_groups must be an int >= 1, got {g!r}")
    if g > 1:
        if cfg.num_beams % g:
            raise ValueError(
                f"num_beams ({cfg.num_beams}) must be divisible by num_beam_groups ({g})"
            )
        if cfg.do_sample:
            raise ValueError("diverse beam search (num_beam_groups > 1) needs do_sample=False")
    if not isinstance(cfg.diversity_penalty, (int, float)) or cfg.diversity_penalty < 0:
        raise ValueError(f"diversity_penalty must be a float >= 0, got {cfg.diversity_penalty!r}")
    if cfg.diversity_penalty and g == 1:
        raise ValueError(
            "diversity_penalty applies to diverse beam search only: pass num_beam_groups > 1"
        )
    if cfg.penalty_alpha is not None and not (
        isinstance(cfg.penalty_alpha, (int, float)) and 0 <= cfg.penalty_alpha <= 1
    ):
        raise ValueError(f"penalty_alpha must be in [0, 1], got {cfg.penalty_alpha!r}")
    for name in ("num_assistant_tokens", "prompt_lookup_num_tokens", "max_matching_ngram_size"):
        v = getattr(cfg, name)
        if v is not None and (not _is_int(v) or v < 1):
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if cfg.num_assistant_tokens_schedule not in ("constant", "heuristic", "heuristic_transient"):
        raise ValueError(
            "num_assistant_tokens_schedule must be 'constant', 'heuristic' or "
            f"'heuristic_transient', got {cfg.num_assistant_tokens_schedule!r}"
        )


class Inputs:
    """Prompt batch in the internal layout: left-padded ids, mask (None without padding)."""

    def __init__(
        self, ids: torch.Tensor, mask: torch.Tensor | None, pad_lengths: torch.Tensor | None
    ):
        self.ids, self.mask, self.pad_lengths = ids, mask, pad_lengths


def _as_ids(name: str, value: Any) -> torch.Tensor:
    """`input_ids` / `attention_mask` given as Python lists (or numpy) as a long tensor."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        lengths = sorted({len(row) for row in value})
        if len(lengths) > 1:
            raise ValueError(
                f"{name} rows have different lengths ({', '.join(map(str, lengths))}); pad them "
                "to one length (tokenizer(..., padding=True, return_tensors='pt')) and pass "
                "attention_mask"
            )
    try:
        out = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"{name} must be a tensor or a (nested) list of ints, got {type(value).__name__} ({err})"
        ) from err
    if out.is_floating_point() or out.is_complex():
        raise ValueError(f"{name} must hold integers, got {out.dtype}")
    return out.long()


def prepare_inputs(
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    cfg: GenerationConfig,
    eos: list[int],
    pad: int | None,
    device: torch.device,
    batch_hint: int | None,
) -> Inputs:
    """Checked prompt batch, left-padded (module docstring)."""
    if input_ids is not None:
        input_ids = _as_ids("input_ids", input_ids)
    if attention_mask is not None:
        attention_mask = _as_ids("attention_mask", attention_mask)
    if input_ids is not None and input_ids.is_floating_point():
        raise ValueError(f"input_ids must hold token ids (integers), got {input_ids.dtype}")
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
        return Inputs(
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
        return Inputs(ids, None, None)
    if attention_mask.dtype != torch.bool and bool(
        ((attention_mask != 0) & (attention_mask != 1)).any()
    ):
        raise ValueError(
            "attention_mask must hold 1 (real token) and 0 (padding) only, got values "
            f"{sorted({float(v) for v in attention_mask.unique().tolist()})[:6]}"
        )
    mask = attention_mask.to(device).bool()
    if mask.shape != ids.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(mask.shape)} but input_ids has {tuple(ids.shape)}; they must match"
        )
    if bool(mask.all()):
        return Inputs(ids, None, None)
    if bool((mask.sum(1) == 0).any()):
        raise ValueError(
            "a row of attention_mask is all zeros (an empty prompt in a batch); give it a token (e.g. BOS)"
        )
    # Stable sort on the mask moves pads to the front, real tokens keep their order: left padding.
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    mask = mask.gather(1, order)
    ids = ids.gather(1, order).masked_fill(~mask, pad if pad is not None else 0)
    return Inputs(ids, mask, (~mask).sum(1))


class Plan(NamedTuple):
    inputs: Inputs
    generator: torch.Generator | None
    eos: list[int]
    pad: int | None
    max_new: int


def check_seed(seed: Any) -> int:
    """`seed` as an int in 0..2**64 - 1 (what `torch.Generator.manual_seed` takes unsigned)."""
    if not _is_int(seed) or not 0 <= seed <= _SEED_MAX:
        raise ValueError(f"seed must be an int in 0..2**64-1, got seed={seed!r}")
    return seed


def plan(
    model: Any,
    cfg: GenerationConfig,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    seed: int | None,
    generator: torch.Generator | None,
    batch_hint: int | None = None,
) -> Plan:
    """What `generate` and `stream_generate` check and derive before decoding: options,
    the RNG, special tokens, left-padded inputs and the number of new tokens."""
    validate(cfg)
    if seed is not None and generator is not None:
        raise ValueError("pass seed or generator, not both")
    device = model.device
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(check_seed(seed))
    eos = as_list(cfg.eos_token_id)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else (eos[0] if eos else None)
    inputs = prepare_inputs(input_ids, attention_mask, cfg, eos, pad, device, batch_hint)
    T = inputs.ids.shape[1]
    max_new = cfg.max_new_tokens if cfg.max_new_tokens is not None else cfg.max_length - T
    if max_new < 1:
        raise ValueError(
            f"max_length={cfg.max_length} leaves no room after the {T}-token prompt; pass max_new_tokens=..."
        )
    if cfg.min_new_tokens is not None and cfg.min_new_tokens > max_new:
        raise ValueError(
            f"min_new_tokens ({cfg.min_new_tokens}) exceeds max_new_tokens ({max_new}); "
            "lower min_new_tokens or raise max_new_tokens"
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
    if cfg.context_overflow == "slide" and slide_stride(cfg, n_positions) >= n_positions:
        raise ValueError(
            f"slide_stride ({cfg.slide_stride}) must be below n_positions ({n_positions}): each "
            "re-encode keeps n_positions - slide_stride tokens of context"
        )
    return Plan(inputs, generator, eos, pad, max_new)
