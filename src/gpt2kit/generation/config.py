"""`GenerationConfig`: decoding options, read and written as `transformers`' `generation_config.json`.

Field names and effective defaults are those of `transformers.GenerationConfig` (which
stores `None` and fills the same defaults at `generate` time). The JSON holds only the
fields that differ from the defaults, as `transformers` writes it, plus any key we do
not know (kept in `extra` on a round trip), so a folder saved by either library loads in
the other with the same decoding behaviour.

`context_overflow` / `slide_stride` have no `transformers` counterpart (it ignores them
and keeps them as attributes); `return_dict_in_generate`, `output_scores` and
`output_logits` are `transformers`' fields with its meaning.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

GENERATION_CONFIG = "generation_config.json"

logger = logging.getLogger("gpt2kit")

# `transformers.GenerationConfig` options gpt2kit does not implement, with the values that
# leave decoding unchanged. Set to anything else (in a file, a transformers config object or
# as a keyword) they make `generate` fail with their name (`unsupported_options`) rather
# than decode differently from `transformers` without a word.
TRANSFORMERS_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "guidance_scale": (None, 1, 1.0),
    "watermarking_config": (None,),
    "dola_layers": (None,),
    "constraints": (None,),
    "force_words_ids": (None,),
    "token_healing": (None, False),
    "epsilon_cutoff": (None, 0, 0.0),
    "eta_cutoff": (None, 0, 0.0),
    "top_h": (None,),
    "encoder_repetition_penalty": (None, 1, 1.0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "exponential_decay_length_penalty": (None,),
    "remove_invalid_values": (None, False),
    "low_memory": (None, False),
    "assistant_early_exit": (None,),
    "assistant_lookbehind": (None,),
    "target_lookbehind": (None,),
    "assistant_ensemble_weight": (None,),
    "speculation_type": (None,),
    "prefill_chunk_size": (None,),
    "use_mtp": (None, False),
    "cache_config": (None,),
    "max_cache_len": (None,),
    "continuous_batching_config": (None,),
    "is_assistant": (None, False),
}
# `transformers` fields that say nothing about how tokens are picked here.
TRANSFORMERS_NEUTRAL = (
    "transformers_version",
    "_from_model_config",
    "_commit_hash",
    "decoder_start_token_id",
    "generation_kwargs",
)


@dataclass
class GenerationConfig:
    """How `generate` decodes: strategy, length, filters, penalties, special tokens.

    Example:
        >>> cfg = GenerationConfig(max_new_tokens=8, do_sample=True, top_k=5)
        >>> cfg.update(temperature=0.7).temperature
        0.7
        >>> GenerationConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    # length (neither set: 20 new tokens, as `transformers` 5 generates by default)
    max_length: int | None = None
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    early_stopping: bool | str = False
    stop_strings: str | list[str] | None = None
    max_time: float | None = None
    # strategy
    do_sample: bool = False
    num_beams: int = 1
    num_beam_groups: int = 1
    penalty_alpha: float | None = None
    use_cache: bool = True
    # cache and compilation (`transformers`' names; see `gpt2kit.generation.compiled`)
    cache_implementation: str | None = None
    compile_config: Any = None
    disable_compile: bool = False
    # logits manipulation
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    min_p: float | None = None
    typical_p: float | None = 1.0
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    bad_words_ids: list[list[int]] | None = None
    renormalize_logits: bool = False
    diversity_penalty: float = 0.0
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list[int] | None = None
    sequence_bias: Any = None
    # assisted decoding (`assistant_model=`) and prompt lookup
    num_assistant_tokens: int = 20
    num_assistant_tokens_schedule: str = "constant"
    assistant_confidence_threshold: float | None = 0.4
    prompt_lookup_num_tokens: int | None = None
    max_matching_ngram_size: int | None = None
    # output
    num_return_sequences: int = 1
    return_dict_in_generate: bool = False
    output_scores: bool = False
    output_logits: bool = False
    output_attentions: bool = False
    output_hidden_states: bool = False
    # context longer than the model's positions ("error" or "slide"; gpt2kit only)
    context_overflow: str = "error"
    slide_stride: int | None = None
    # special tokens
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    # keys of other libraries / other `transformers` features, kept on a round trip
    extra: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **kwargs: Any) -> None:
        for f in fields(self):
            if f.name == "extra":
                continue
            default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
            setattr(self, f.name, kwargs.pop(f.name, default))
        extra = dict(kwargs.pop("extra", None) or {})
        # `transformers` writes its version; it says nothing about decoding.
        kwargs.pop("transformers_version", None)
        kwargs.pop("_from_model_config", None)
        extra.update(kwargs)
        self.extra = extra

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        # `None` in a transformers v5 file means "use the default".
        return cls(**{k: v for k, v in data.items() if v is not None})

    @classmethod
    def from_transformers(cls, config: Any) -> GenerationConfig:
        """Our config from a `transformers.GenerationConfig` object (the fields it sets).

        Its non-default fields are read (`to_diff_dict`), so its `None` defaults become
        ours; options we do not implement stay in `extra`, where `generate` names them.
        """
        data = config.to_diff_dict() if hasattr(config, "to_diff_dict") else config.to_dict()
        return cls.from_dict(dict(data))

    @classmethod
    def coerce(cls, config: Any) -> GenerationConfig:
        """`config` as our `GenerationConfig` (a `transformers` one or a dict are converted)."""
        if isinstance(config, GenerationConfig):
            return config
        if isinstance(config, dict):
            return cls.from_dict(config)
        if hasattr(config, "to_diff_dict") or hasattr(config, "to_dict"):
            return cls.from_transformers(config)
        raise TypeError(
            f"generation_config must be a GenerationConfig (gpt2kit's or transformers'), "
            f"got {type(config).__name__}"
        )

    def unsupported_options(self) -> list[str]:
        """`transformers` options set here that gpt2kit cannot honour (sorted names)."""
        return sorted(
            k
            for k, v in self.extra.items()
            if k in TRANSFORMERS_UNSUPPORTED and v not in TRANSFORMERS_UNSUPPORTED[k]
        )

    @classmethod
    def from_model_config(cls, config: Any) -> GenerationConfig:
        """Defaults plus the special tokens of a model config (`bos/eos/pad_token_id`)."""
        return cls(
            bos_token_id=getattr(config, "bos_token_id", None),
            eos_token_id=getattr(config, "eos_token_id", None),
            pad_token_id=getattr(config, "pad_token_id", None),
        )

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, filename: str = GENERATION_CONFIG
    ) -> GenerationConfig:
        """Read `generation_config.json` from a folder (or a path to the file itself)."""
        path = Path(folder)
        if path.is_dir():
            path = path / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; pass a folder that holds {filename}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object")
        known = {f.name for f in fields(cls)} | set(TRANSFORMERS_UNSUPPORTED)
        unknown = sorted(k for k in data if k not in known and k not in TRANSFORMERS_NEUTRAL)
        if unknown:
            # Another library's keys, or a typo: kept (written back on save), never applied.
            logger.warning(
                "%s: unknown generation option(s) %s are kept but not used by generate",
                path,
                ", ".join(unknown),
            )
        return cls.from_dict(data)

    # `transformers.Seq2SeqTrainer(predict_with_generate=True)` reads and resets this flag
    # and fills defaults with the two methods below; our fields hold the effective defaults.
    _from_model_config = False

    def _get_default_generation_params(self) -> dict[str, Any]:
        # (transformers' hook: `Seq2SeqTrainer` fills unset fields with these and pads its
        # predictions to `max_length`, which must then be a number, 20 as in transformers)
        return {"max_length": 20}

    def update(self, defaults_only: bool = False, **changes: Any) -> GenerationConfig:
        """Set fields in place (unknown names go to `extra`); returns self. `defaults_only`
        (`transformers`' flag): set only fields that are still None."""
        names = {f.name for f in fields(self)} - {"extra"}
        for key, value in changes.items():
            if defaults_only and getattr(self, key, None) is not None:
                continue
            if key in names:
                setattr(self, key, value)
            else:
                self.extra[key] = value
        return self

    def copy(self, **changes: Any) -> GenerationConfig:
        return copy.deepcopy(self).update(**changes)

    # -- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field (defaults included) plus the extras."""
        out = {
            f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "extra"
        }
        out.update(copy.deepcopy(self.extra))
        if isinstance(out.get("sequence_bias"), dict):
            # JSON has no tuple keys: `transformers`' list form, [[ids], bias] per entry.
            out["sequence_bias"] = [[list(k), v] for k, v in out["sequence_bias"].items()]
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """The fields that differ from the defaults, plus the extras: what the JSON holds."""
        default = GenerationConfig().to_dict()
        # `compile_config` is a runtime choice (it may hold a callable backend); `transformers`
        # leaves it out of the file too.
        return {
            k: v
            for k, v in self.to_dict().items()
            if (k not in default or v != default[k]) and k != "compile_config"
        }

    def to_json_string(self) -> str:
        return json.dumps(self.to_diff_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `generation_config.json` into `directory` (created if needed)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        target = path / GENERATION_CONFIG
        target.write_text(self.to_json_string(), encoding="utf-8")
        return target

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_dict() == other.to_dict()
