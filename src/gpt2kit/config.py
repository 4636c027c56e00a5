"""`GPT2Config`: every GPT-2 hyper-parameter, read and written as `transformers`' `config.json`.

The JSON written here is what `transformers.GPT2Config.save_pretrained` writes for the
same settings (same keys, same defaults), so a folder saved by gpt2kit loads in
`transformers`, vLLM or TGI unchanged, and a folder from the Hub loads here. Keys we do
not know (other libraries' fields, our own task options) are kept on a round trip.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import __version__
from .config_checks import (
    ConfigError,
    check_fields,
    normalize_architectures,
    normalize_id2label,
    normalize_label2id,
)
from .hub import HubError, HubOptions, resolve_folder

# Activations GPT-2 checkpoints use (`transformers.activations.ACT2FN` names).
ACTIVATIONS = (
    "gelu_new",
    "gelu",
    "gelu_pytorch_tanh",
    "gelu_fast",
    "quick_gelu",
    "relu",
    "silu",
    "swish",
    "tanh",
    "sigmoid",
    "mish",
    "linear",
)
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# Generic `transformers` names for the GPT-2 fields (`GPT2Config.attribute_map`).
ALIASES = {
    "hidden_size": "n_embd",
    "max_position_embeddings": "n_positions",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
}

# Sizes of the OpenAI releases, from the `config.json` of the Hub repositories
# openai-community/{gpt2,gpt2-medium,gpt2-large,gpt2-xl} and distilbert/distilgpt2.
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    "distilgpt2": dict(n_layer=6, n_head=12, n_embd=768),
}


@dataclass
class GPT2Config:
    """Hyper-parameters of a GPT-2 model and its task head.

    Field names and defaults are those of `transformers.GPT2Config`; the generic names
    (`hidden_size`, `num_hidden_layers`, `num_attention_heads`, `max_position_embeddings`)
    are accepted as keyword arguments and readable as properties. Unknown keyword
    arguments are kept in `extra` and written back to `config.json`.

    Example:
        >>> cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100)
        >>> cfg.hidden_size, cfg.head_dim
        (32, 8)
        >>> GPT2Config.from_name("gpt2-medium").n_layer
        24
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    summary_type: str = "cls_index"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    scale_attn_weights: bool = True
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    pad_token_id: int | None = None
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True
    id2label: dict[int, str] | None = None
    problem_type: str | None = None
    architectures: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **kwargs: Any) -> None:
        for alias, name in ALIASES.items():
            if alias in kwargs:
                kwargs[name] = kwargs.pop(alias)
        known = {f.name for f in fields(self)}
        extra = dict(kwargs.pop("extra", None) or {})
        num_labels = kwargs.pop("num_labels", None)
        label2id = kwargs.pop("label2id", None)
        for f in fields(self):
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            elif f.name == "extra":
                continue
            else:
                value = f.default_factory() if callable(f.default_factory) else f.default
            setattr(self, f.name, value)
        extra.update({k: v for k, v in kwargs.items() if k not in known})
        # `transformers` bookkeeping that says nothing about the model.
        for key in ("transformers_version", "gpt2kit_version", "model_type", "_name_or_path"):
            extra.pop(key, None)
        self.extra = extra
        self.architectures = normalize_architectures(self.architectures)
        self.id2label = normalize_id2label(self.id2label)
        label2id = normalize_label2id(label2id)
        if self.id2label is None and label2id:
            self.id2label = {int(v): str(k) for k, v in label2id.items()}
        if num_labels is not None and (
            not isinstance(num_labels, int) or isinstance(num_labels, bool)
        ):
            raise ConfigError(f"num_labels must be a positive integer, got {num_labels!r}")
        if num_labels is not None and (self.id2label is None or len(self.id2label) != num_labels):
            self.num_labels = int(num_labels)
        self.validate()

    # -- derived and aliased fields ---------------------------------------------------------
    hidden_size = property(lambda self: self.n_embd)
    num_hidden_layers = property(lambda self: self.n_layer)
    num_attention_heads = property(lambda self: self.n_head)
    max_position_embeddings = property(lambda self: self.n_positions)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def num_labels(self) -> int:
        """Number of classes of a task head; 2 when no labels are set, as in `transformers`."""
        return len(self.id2label) if self.id2label is not None else 2

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if n < 1:
            raise ConfigError(f"num_labels must be >= 1, got {n}")
        self.id2label = {i: f"LABEL_{i}" for i in range(n)}

    @property
    def label2id(self) -> dict[str, int]:
        """Label name -> class id; `LABEL_0`, `LABEL_1` when no labels are set (as `transformers`)."""
        id2label = self.id2label if self.id2label is not None else {0: "LABEL_0", 1: "LABEL_1"}
        return {v: k for k, v in id2label.items()}

    def get(self, key: str, default: Any = None) -> Any:
        """A field or an extra (task-specific) option, with a default when absent."""
        if key in self.extra:
            return self.extra[key]
        return getattr(self, key, default)

    def validate(self) -> None:
        """Raise `ConfigError` naming the first field no model can be built from."""
        check_fields(self)  # every field's type by name, finite numbers, ids in the vocabulary
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"choose n_head among the divisors of {self.n_embd}"
            )
        if self.activation_function not in ACTIVATIONS:
            raise ConfigError(
                f"activation_function {self.activation_function!r} is not supported; "
                f"use one of {', '.join(ACTIVATIONS)}"
            )
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(
                f"problem_type {self.problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}"
            )

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> GPT2Config:
        """A preset (`gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl`, `distilgpt2`) with overrides."""
        key = name.split("/")[-1]
        if key not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[key], **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPT2Config:
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> GPT2Config:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON ({err})") from err
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{path} is not UTF-8 text (byte {err.object[err.start : err.end]!r} at offset "
                f"{err.start}); re-save it as UTF-8 JSON"
            ) from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        model_type = data.get("model_type", "gpt2")
        if model_type == "encoder-decoder":  # transformers' EncoderDecoderModel of two GPT-2s
            data = flatten_encoder_decoder_config(data, path)
            model_type = "gpt2"
        if model_type not in ("gpt2", None):
            raise ConfigError(
                f"{path} describes a {model_type!r} model; gpt2kit loads GPT-2 architectures only"
            )
        try:
            return cls.from_dict(data)
        except ConfigError as err:  # name the file as well as the field
            raise ConfigError(f"{path}: {err}") from err

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        trust_remote_code: bool = False,
        **overrides: Any,
    ) -> GPT2Config:
        """Read `config.json` from a folder, a file or a Hub id (fetched through `gpt2kit.hub`
        with `revision`, `token`, `cache_dir`, `local_files_only`, `force_download`);
        `overrides` change fields. `trust_remote_code` is accepted; no code ever runs."""
        path = Path(pretrained_model_name_or_path)
        if path.is_file():
            cfg = cls.from_json_file(path)
        else:
            options = HubOptions(revision, token, cache_dir, local_files_only, force_download)
            try:
                folder = resolve_folder(
                    path if path.is_dir() else str(path), options, need_weights=False
                )
            except HubError as err:
                raise ConfigError(str(err)) from err
            cfg = cls.from_json_file(folder / "config.json")
        for key, value in overrides.items():
            cfg.update(**{key: value})
        return cfg

    def update(self, **changes: Any) -> GPT2Config:
        """Change fields in place (aliases and extras accepted) and re-validate."""
        merged = {**self.to_dict(), **changes}
        if "num_labels" in changes:
            merged.pop("id2label", None)
            merged.pop("label2id", None)
        self.__init__(**merged)  # type: ignore[misc]
        return self

    def copy(self, **changes: Any) -> GPT2Config:
        return GPT2Config(**{**self.to_dict(), **changes})

    # -- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The `config.json` content, keys as `transformers` writes them."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("extra", "id2label", "problem_type", "architectures"):
                continue
            out[f.name] = getattr(self, f.name)
        if self.architectures:
            out["architectures"] = list(self.architectures)
        # `transformers` writes the label maps only when they differ from its 2-label default.
        if self.id2label is not None and self.id2label != {0: "LABEL_0", 1: "LABEL_1"}:
            out["id2label"] = {str(k): v for k, v in sorted(self.id2label.items())}
            out["label2id"] = {v: k for k, v in sorted(self.id2label.items())}
        if self.problem_type is not None:
            out["problem_type"] = self.problem_type
        out["model_type"] = "gpt2"
        out.update(self.extra)
        out["gpt2kit_version"] = __version__
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `config.json` into `directory` (created if needed)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(self.to_json_string(), encoding="utf-8")
        return path / "config.json"

    def __setattr__(self, name: str, value: Any) -> None:
        # `config.decoder_start_token_id = 5` (transformers' idiom for options that are not
        # GPT-2 fields) sets the extra, so `get` reads it and `config.json` keeps it.
        if name.startswith("_") or name in _FIELD_NAMES or hasattr(type(self), name):
            object.__setattr__(self, name, value)
        else:
            self.extra[name] = value

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: expose extras as attributes.
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"GPT2Config has no field {name!r}")


_FIELD_NAMES = frozenset(f.name for f in fields(GPT2Config))

# Top-level keys of an `EncoderDecoderConfig` that are the pair's, not the decoder's.
_ENCODER_DECODER_TOP = (
    "decoder_start_token_id",
    "pad_token_id",
    "share_encoder_decoder",
    "encoder_hidden_size",
)
_SUB_BOOKKEEPING = (
    "architectures",
    "is_decoder",
    "add_cross_attention",
    "_name_or_path",
    "transformers_version",
    "gpt2kit_version",
    "model_type",
    "dtype",
    "torch_dtype",
)


def flatten_encoder_decoder_config(
    data: dict[str, Any], path: Any = "config.json"
) -> dict[str, Any]:
    """An `EncoderDecoderModel` config.json (nested `encoder`/`decoder` GPT-2 configs) ->
    the flat form `GPT2ForConditionalGeneration` keeps: the decoder's fields, the pair's
    keys (`decoder_start_token_id`, `pad_token_id`, ...), the encoder's fields as `encoder`
    when they differ from the decoder's (`tie_encoder_decoder`, which `transformers` 5
    ignores, is dropped)."""
    subs = {}
    for side in ("encoder", "decoder"):
        sub = data.get(side)
        if not isinstance(sub, dict):
            raise ConfigError(f"{path}: an encoder-decoder config needs an {side!r} object")
        if sub.get("model_type", "gpt2") != "gpt2":
            raise ConfigError(
                f"{path}: the {side} is a {sub.get('model_type')!r} model; gpt2kit's "
                "GPT2ForConditionalGeneration needs a GPT-2 encoder and a GPT-2 decoder"
            )
        subs[side] = {k: v for k, v in sub.items() if k not in _SUB_BOOKKEEPING}
    flat = dict(subs["decoder"])
    for key in _ENCODER_DECODER_TOP:
        if data.get(key) is not None:
            flat[key] = data[key]
    if subs["encoder"] != subs["decoder"]:  # (else the encoder's fields are the decoder's)
        flat["encoder"] = subs["encoder"]
    enc_width = subs["encoder"].get("n_embd", 768)
    if enc_width != flat.get("n_embd", 768):
        flat["encoder_hidden_size"] = enc_width
    flat["architectures"] = ["GPT2ForConditionalGeneration"]
    return flat
