"""Checks on `GPT2Config` fields: each field's type by name, finite numbers, ids inside the
vocabulary, and the memory a config would allocate before anything is built.

Why a module of its own: `config.json` is input from anywhere (the Hub, a colleague, a
hand edit), and a bad value used to surface far from its cause, as a `TypeError` inside
`nn.LayerNorm`, a NaN loss, or a machine that builds blocks until memory runs out. Every
check here raises `ConfigError` naming the field, the value and what would be accepted.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import torch

# Kinds of fields, by name (the `transformers.GPT2Config` fields).
POSITIVE_INTS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
DROPOUTS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout")
BOOLS = (
    "summary_use_proj",
    "summary_proj_to_labels",
    "scale_attn_weights",
    "use_cache",
    "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn",
    "add_cross_attention",
    "tie_word_embeddings",
)
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")
SUMMARY_TYPES = ("last", "first", "mean", "cls_index", "attn")
# `transformers.GPT2Config`'s default bos/eos: it stays in every small config written from
# the defaults (tiny test models with `vocab_size=100` included), so an out-of-vocabulary
# bos/eos of exactly this value passes without a word; another bos/eos beyond the
# vocabulary is a warning, a negative one or an out-of-vocabulary pad an error.
GPT2_EOS = 50256
_WARNED: set[tuple[str, int, int]] = set()
logger = logging.getLogger("gpt2kit")

# The sizes of GPT-2 XL: how far a field is past them says which field made a size absurd.
_XL = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 1600, "n_layer": 48, "n_inner": 6400}


class ConfigError(ValueError):
    """A config field has a value no GPT-2 model can be built from.

    Defined here, in the leaf module that raises it, and re-exported by `gpt2kit.config`:
    config imports the checks, never the reverse.
    """

    __module__ = "gpt2kit.config"


def _error(message: str) -> Exception:
    return ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite_number(name: str, value: Any) -> float:
    if not _is_number(value):
        raise _error(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise _error(f"{name} must be a finite number, got {value!r}")
    return float(value)


def normalize_id2label(value: Any) -> dict[int, str] | None:
    """`id2label` as `{int: str}`; JSON writes the keys as strings. A list, or keys that are not
    integers, is an error naming the field."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _error(
            f"id2label must be an object mapping class ids to names ({{'0': 'neg', '1': 'pos'}}), "
            f"got a {type(value).__name__}: {str(value)[:80]}"
        )
    out: dict[int, str] = {}
    for key, name in value.items():
        try:
            out[int(key)] = str(name)
        except (TypeError, ValueError):
            raise _error(f"id2label key {key!r} is not an integer class id") from None
    return out


def normalize_label2id(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _error(
            f"label2id must be an object mapping names to class ids, got a {type(value).__name__}"
        )
    for name, key in value.items():
        if not _is_int(key) and not (isinstance(key, str) and key.strip().lstrip("-").isdigit()):
            raise _error(f"label2id[{name!r}] = {key!r} is not an integer class id")
    return value


def normalize_architectures(value: Any) -> list[str] | None:
    """`architectures` as a list of class names; a single string is taken as a one-item list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _error(
            f"architectures must be a list of class names (['GPT2LMHeadModel']), got {value!r}"
        )
    return list(value)


def check_fields(cfg: Any) -> None:
    """Raise `ConfigError` naming the first field of `cfg` with a wrong type or value."""
    for name in POSITIVE_INTS:
        value = getattr(cfg, name)
        if not _is_int(value) or value < 1:
            raise _error(f"{name} must be a positive integer, got {value!r}")
    if cfg.n_inner is not None and (not _is_int(cfg.n_inner) or cfg.n_inner < 1):
        raise _error(f"n_inner must be a positive integer or null, got {cfg.n_inner!r}")
    for name in DROPOUTS:
        value = _finite_number(name, getattr(cfg, name))
        if not 0.0 <= value < 1.0:
            raise _error(f"{name} must be in [0, 1), got {getattr(cfg, name)!r}")
    if _finite_number("layer_norm_epsilon", cfg.layer_norm_epsilon) <= 0:
        raise _error(f"layer_norm_epsilon must be > 0, got {cfg.layer_norm_epsilon!r}")
    if _finite_number("initializer_range", cfg.initializer_range) < 0:
        raise _error(f"initializer_range must be >= 0, got {cfg.initializer_range!r}")
    for name in BOOLS:
        value = getattr(cfg, name)
        if not isinstance(value, bool):
            raise _error(f"{name} must be true or false, got {value!r} ({type(value).__name__})")
    if not isinstance(cfg.activation_function, str):
        raise _error(f"activation_function must be a string, got {cfg.activation_function!r}")
    if not isinstance(cfg.summary_type, str) or cfg.summary_type not in SUMMARY_TYPES:
        raise _error(f"summary_type {cfg.summary_type!r} is not one of {', '.join(SUMMARY_TYPES)}")
    if cfg.summary_activation is not None and not isinstance(cfg.summary_activation, str):
        raise _error(f"summary_activation must be a string or null, got {cfg.summary_activation!r}")
    if cfg.problem_type is not None and not isinstance(cfg.problem_type, str):
        raise _error(f"problem_type must be a string or null, got {cfg.problem_type!r}")
    for name in TOKEN_IDS:
        value = getattr(cfg, name)
        ids = value if isinstance(value, list) and name == "eos_token_id" else [value]
        for token in ids:
            if token is None and len(ids) == 1:
                continue
            if not _is_int(token):
                kind = (
                    "an integer or a list of integers" if name == "eos_token_id" else "an integer"
                )
                raise _error(f"{name} must be {kind} (or null), got {value!r}")
            if 0 <= token < cfg.vocab_size or (token == GPT2_EOS and name != "pad_token_id"):
                continue
            message = (
                f"{name} {token} is outside the vocabulary [0, {cfg.vocab_size}); "
                "fix the id or vocab_size"
            )
            if name == "pad_token_id" or token < 0:
                raise _error(message)
            # bos/eos beyond the vocabulary: the model can never emit them (generation then
            # never stops at eos), but configs written so exist (a test config whose
            # vocabulary was shrunk): named once per (field, id, size), not refused
            if (name, token, cfg.vocab_size) not in _WARNED:
                _WARNED.add((name, token, cfg.vocab_size))
                logger.warning("config: %s; the model can never produce it", message)


def parameter_count(cfg: Any) -> dict[str, int]:
    """Parameters a model of `cfg` holds, by part (embeddings, blocks, untied head)."""
    d, inner = cfg.n_embd, cfg.n_inner if cfg.n_inner is not None else 4 * cfg.n_embd
    per_block = 4 * d * d + 4 * d + 2 * d * inner + inner + d + 4 * d  # attn, mlp, 2 norms
    if cfg.add_cross_attention:
        per_block += 4 * d * d + 4 * d + 2 * d
    parts = {
        "embeddings": cfg.vocab_size * d + cfg.n_positions * d,
        "blocks": cfg.n_layer * per_block + 2 * d,
    }
    if not cfg.tie_word_embeddings:
        parts["lm_head"] = cfg.vocab_size * d
    return parts


def memory_limit(device: torch.device) -> int | None:
    """Bytes a model may take on `device`: physical memory on CPU, the card's total on CUDA;
    None where nothing is allocated (meta) or the size is unknown."""
    if device.type == "meta":
        return None
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def check_allocation(
    cfg: Any, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> None:
    """Refuse a config whose weights would not fit `device` before any of them is allocated.

    Names the field that is furthest past GPT-2 XL's sizes (`n_layer: 1000000000`, say), and
    the memory the weights would need against what the device has.
    """
    dev = torch.device(device) if device is not None else torch.get_default_device()
    dtype = dtype or torch.get_default_dtype()
    element = torch.empty((), dtype=dtype, device="meta").element_size()
    sizes = {
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_positions,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_inner": cfg.n_inner if cfg.n_inner is not None else 4 * cfg.n_embd,
    }
    field = max(sizes, key=lambda k: sizes[k] / _XL[k])
    d = cfg.n_embd
    limit = memory_limit(dev)
    parts = parameter_count(cfg)
    need = sum(parts.values()) * element
    if limit is None or need <= limit:
        largest = max(cfg.vocab_size * d, cfg.n_positions * d, 3 * d * d, d * sizes["n_inner"])
        if largest * element >= 2**63:  # torch cannot even describe it (not on meta either)
            raise _error(
                f"{field}={sizes[field]} makes one tensor of {largest:,} elements, more than "
                f"any tensor can hold; lower {field} (GPT-2 XL has {_XL[field]})"
            )
        return
    raise _error(
        f"{field}={sizes[field]} makes the weights need {_fmt_bytes(need)} "
        f"({sum(parts.values()):,} parameters in {dtype}), more than the "
        f"{_fmt_bytes(limit)} of {dev.type} memory; lower {field} (GPT-2 XL has {_XL[field]})"
    )
