"""`LoraConfig`: a LoRA adapter's settings under `peft`'s field names, and its
`adapter_config.json`.

Why our own class instead of `peft.LoraConfig`: gpt2kit must read and write adapters
without `peft` installed (it is a test dependency only), and must refuse what it does not
compute (DoRA, a bias inside the adapter, PiSSA-style initializations ...) instead of
silently computing something else. A `peft.LoraConfig` is accepted wherever a
`LoraConfig` is (`LoraConfig.coerce`), and the JSON written is the file `peft` writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"

# peft's default target for GPT-2 (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`)
DEFAULT_TARGETS = ["c_attn"]
# heads peft's task models train alongside the adapter (`PeftModelFor*`: modules_to_save);
# peft >= 0.22 adds `pre_classifier` (DistilBERT's) to every classification adapter it writes,
# so a name here that the model lacks is not an error
TASK_HEADS = {
    "SEQ_CLS": ["classifier", "score", "pre_classifier"],
    "TOKEN_CLS": ["classifier", "score", "pre_classifier"],
    "QUESTION_ANS": ["qa_outputs"],
}
TASK_TYPES = (
    "CAUSAL_LM",
    "SEQ_CLS",
    "TOKEN_CLS",
    "QUESTION_ANS",
    "FEATURE_EXTRACTION",
    "SEQ_2_SEQ_LM",
)
BIAS_CHOICES = ("none", "all", "lora_only")
INIT_CHOICES = (True, False, "gaussian")

# peft fields that select a feature gpt2kit does not compute: the value that means "off"
# (a file may carry them at that value; anything else is an error naming the field)
_OFF_FIELDS: dict[str, Any] = {
    "use_dora": False,
    "lora_bias": False,
    "target_parameters": None,
    "layer_replication": None,
    "trainable_token_indices": None,
    "use_qalora": False,
    "use_bdlora": None,
    "alora_invocation_tokens": None,
    "arrow_config": None,
    "corda_config": None,
    "eva_config": None,
    "kasa_config": None,
    "lora_ga_config": None,
    "monteclora_config": None,
    "velora_config": None,
    "megatron_config": None,
    "loftq_config": {},
}
# peft fields that do not change the computation: read and dropped
_IGNORED_FIELDS = frozenset(
    {
        "peft_version",
        "auto_mapping",
        "revision",
        "megatron_core",
        "qalora_group_size",
        "ensure_weight_tying",
        "runtime_config",
    }
)


class AdapterConfigError(ValueError):
    """An adapter config gpt2kit cannot honour; the message names the field and the fix."""


@dataclass
class LoraConfig:
    """A LoRA adapter: `W x + (alpha / r) * B A x` on each targeted projection.

    Field names and meanings are `peft.LoraConfig`'s:
        r: rank of `A [r, in]` and `B [out, r]`.
        lora_alpha: scale numerator; the update is multiplied by `lora_alpha / r`
            (`lora_alpha / sqrt(r)` with `use_rslora`).
        target_modules: module names (a name matches itself and any `... .name`) or one
            regex matched against the full module path; `"all-linear"`: every projection
            except the LM head; None: GPT-2's default, `["c_attn"]`.
        lora_dropout: dropout on the adapter's input during training.
        bias: `"none"`, `"all"` (every bias trains and is saved) or `"lora_only"` (the
            targeted projections' biases).
        modules_to_save: modules trained in full beside the adapter and saved with it
            (task heads: `score`, `classifier`, `qa_outputs`, ...).
        init_lora_weights: True (A Kaiming-uniform, B zero: the adapter starts as a
            no-op), `"gaussian"` (A normal(0, 1/r)), False (A and B random: for tests).
        use_rslora: rank-stabilized scaling `lora_alpha / sqrt(r)`.
        fan_in_fan_out: how `peft` stores the base weight it merges into (True for GPT-2's
            `Conv1D`); A and B have the same layout either way, so gpt2kit (whose
            projections are `nn.Linear`) reads both and writes True, as `peft` does on
            GPT-2.
        rank_pattern, alpha_pattern: per-module `r` / `lora_alpha` by name or regex.
        layers_to_transform, layers_pattern: only these block indices (under `h`).
        exclude_modules: names or a regex never targeted.
        task_type: `"CAUSAL_LM"`, `"SEQ_CLS"`, ...; `SEQ_CLS`/`TOKEN_CLS` add `classifier`
            and `score` to `modules_to_save`, `QUESTION_ANS` adds `qa_outputs` (as `peft`).
        inference_mode: adapters loaded frozen (what `peft` writes into saved configs).
        base_model_name_or_path: the base model the adapter was trained on (recorded).

    Example:
        >>> LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn", "c_proj"]).scaling_for("h.0.attn.c_attn")
        2.0
    """

    r: int = 8
    lora_alpha: float = 8
    target_modules: list[str] | str | None = None
    lora_dropout: float = 0.0
    bias: str = "none"
    modules_to_save: list[str] | None = None
    init_lora_weights: bool | str = True
    use_rslora: bool = False
    fan_in_fan_out: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    layers_to_transform: list[int] | int | None = None
    layers_pattern: list[str] | str | None = None
    exclude_modules: list[str] | str | None = None
    task_type: str | None = None
    inference_mode: bool = False
    base_model_name_or_path: str | None = None
    peft_type: str = "LORA"
    use_dora: bool = False
    lora_bias: bool = False

    def __post_init__(self) -> None:
        if self.peft_type != "LORA":
            raise AdapterConfigError(
                f"peft_type={self.peft_type!r}: gpt2kit reads LoRA adapters only (peft_type 'LORA')"
            )
        if self.use_dora:
            raise AdapterConfigError("use_dora=True (DoRA) is not supported; set use_dora=False")
        if self.lora_bias:
            raise AdapterConfigError(
                "lora_bias=True (a bias inside lora_B) is not supported; set lora_bias=False"
            )
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise AdapterConfigError(f"r must be a positive integer, got {self.r!r}")
        if self.bias not in BIAS_CHOICES:
            raise AdapterConfigError(
                f"bias={self.bias!r} is unknown; use one of {', '.join(map(repr, BIAS_CHOICES))}"
            )
        if self.init_lora_weights not in INIT_CHOICES:
            raise AdapterConfigError(
                f"init_lora_weights={self.init_lora_weights!r} is not supported; use True, False "
                "or 'gaussian' (initializations computed from the base weights, such as "
                "'pissa', 'olora' or 'loftq', are not implemented)"
            )
        if not 0.0 <= float(self.lora_dropout) < 1.0:
            raise AdapterConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.task_type is not None and self.task_type not in TASK_TYPES:
            raise AdapterConfigError(
                f"task_type={self.task_type!r} is unknown; use one of {', '.join(TASK_TYPES)}"
            )
        if self.target_modules is None:
            self.target_modules = list(DEFAULT_TARGETS)
        elif not isinstance(self.target_modules, str):
            self.target_modules = list(self.target_modules)
        if self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)
        for name in TASK_HEADS.get(self.task_type or "", []):
            self.modules_to_save = self.modules_to_save or []
            if name not in self.modules_to_save:
                self.modules_to_save.append(name)
        for key, value in {**self.rank_pattern}.items():
            if not isinstance(value, int) or value <= 0:
                raise AdapterConfigError(
                    f"rank_pattern[{key!r}] must be a positive int, got {value!r}"
                )

    # -- per-module values ---------------------------------------------------------------
    def rank_for(self, module_path: str) -> int:
        """`r` for the module at `module_path` (`rank_pattern` first, as `peft`)."""
        key = _pattern_key(self.rank_pattern, module_path)
        return int(self.rank_pattern[key]) if key is not None else self.r

    def alpha_for(self, module_path: str) -> float:
        key = _pattern_key(self.alpha_pattern, module_path)
        return float(self.alpha_pattern[key]) if key is not None else float(self.lora_alpha)

    def scaling_for(self, module_path: str, r: int | None = None) -> float:
        """The factor on `B A x`: `alpha / r`, or `alpha / sqrt(r)` with `use_rslora`."""
        r = self.rank_for(module_path) if r is None else r
        alpha = self.alpha_for(module_path)
        return alpha / (r**0.5) if self.use_rslora else alpha / r

    # -- conversions ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fields as `peft` writes them (`fan_in_fan_out` True: GPT-2's base layers are
        `Conv1D` for `peft`)."""
        data = asdict(self)
        data["fan_in_fan_out"] = True
        if isinstance(data["target_modules"], list):
            data["target_modules"] = list(data["target_modules"])
        data.update({k: v for k, v in _OFF_FIELDS.items() if k not in data})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the adapter config") -> LoraConfig:
        """Build from `peft`'s keys; a feature gpt2kit does not compute is an error naming
        `source` and the field, an unknown key too."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in known:
                kwargs[key] = value
            elif key in _OFF_FIELDS:
                if value not in (_OFF_FIELDS[key], None, {}, [], False):
                    raise AdapterConfigError(
                        f"{source}: {key}={value!r} selects a peft feature gpt2kit does not "
                        f"implement; only LoRA with {key}={_OFF_FIELDS[key]!r} is supported"
                    )
            elif key not in _IGNORED_FIELDS and value not in (None, False, {}, []):
                # (a newer peft's field left at "off" is read; one that is set may change
                # the computation)
                raise AdapterConfigError(
                    f"{source}: unknown field {key!r}={value!r}; gpt2kit reads peft's LoraConfig "
                    "fields (r, lora_alpha, target_modules, ...). Remove it if it is not a LoRA setting"
                )
        if kwargs.get("peft_type", "LORA") != "LORA":
            raise AdapterConfigError(
                f"{source}: peft_type={kwargs['peft_type']!r}; gpt2kit reads LoRA adapters only"
            )
        try:
            return cls(**kwargs)
        except AdapterConfigError as err:
            raise AdapterConfigError(f"{source}: {err}") from None

    @classmethod
    def coerce(cls, config: Any) -> LoraConfig:
        """A `LoraConfig` from ours, a `peft.LoraConfig` (or any object with `to_dict()`),
        or a dict of `peft`'s fields."""
        if isinstance(config, LoraConfig):
            return config
        if isinstance(config, dict):
            return cls.from_dict(config, "adapter config")
        to_dict = getattr(config, "to_dict", None)
        if callable(to_dict):
            data = dict(to_dict())
            data = {k: (v.value if hasattr(v, "value") else v) for k, v in data.items()}
            if isinstance(data.get("target_modules"), set):
                data["target_modules"] = sorted(data["target_modules"])
            if isinstance(data.get("modules_to_save"), set):
                data["modules_to_save"] = sorted(data["modules_to_save"])
            return cls.from_dict(data, f"{type(config).__name__}")
        raise TypeError(
            f"adapter_config must be a gpt2kit.LoraConfig or a peft.LoraConfig, got "
            f"{type(config).__name__}"
        )

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> LoraConfig:
        """Read `folder/adapter_config.json` (as `peft` writes it)."""
        path = Path(folder) / ADAPTER_CONFIG
        if not path.is_file():
            raise AdapterConfigError(
                f"{folder} has no {ADAPTER_CONFIG}: pass a folder written by peft's or gpt2kit's "
                "save_pretrained on a model with an adapter"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise AdapterConfigError(
                f"{path} line {err.lineno}: not valid JSON ({err.msg}); fix or rewrite the file"
            ) from err
        if not isinstance(data, dict):
            raise AdapterConfigError(f"{path} must hold a JSON object of LoraConfig fields")
        for key in ("target_modules", "modules_to_save"):
            if isinstance(data.get(key), list):
                data[key] = list(data[key])
        return cls.from_dict(data, str(path))

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / ADAPTER_CONFIG
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


def _pattern_key(patterns: dict[str, Any], module_path: str) -> str | None:
    """The first key of `patterns` that matches the end of `module_path` (`peft`'s
    `get_pattern_key`: a name or a regex, anchored at a dot)."""
    import re

    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module_path):
            return key
    return None


# `--lora` / YAML `lora:` keys: short names and peft's own
_SPEC_KEYS = {
    "r": "r",
    "alpha": "lora_alpha",
    "lora_alpha": "lora_alpha",
    "dropout": "lora_dropout",
    "lora_dropout": "lora_dropout",
    "targets": "target_modules",
    "target_modules": "target_modules",
    "save": "modules_to_save",
    "modules_to_save": "modules_to_save",
    "bias": "bias",
    "rslora": "use_rslora",
    "use_rslora": "use_rslora",
    "init": "init_lora_weights",
    "init_lora_weights": "init_lora_weights",
    "exclude": "exclude_modules",
    "exclude_modules": "exclude_modules",
    "layers": "layers_to_transform",
    "layers_to_transform": "layers_to_transform",
}
_LIST_FIELDS = ("target_modules", "modules_to_save", "exclude_modules", "layers_to_transform")


def parse_lora_spec(spec: str | dict[str, Any] | bool, source: str = "--lora") -> LoraConfig:
    """A `LoraConfig` from `r=8,alpha=16,targets=c_attn,c_proj,c_fc` (a list key takes the
    items after it that have no `=`), from a YAML/JSON mapping with the same keys (lists
    as lists), or from `true` (the defaults: r=8, alpha=8, c_attn).

    Example:
        >>> c = parse_lora_spec("r=8,alpha=16,targets=c_attn,c_proj,c_fc")
        >>> c.r, c.lora_alpha, c.target_modules
        (8, 16, ['c_attn', 'c_proj', 'c_fc'])
    """
    items: dict[str, Any] = {}
    if spec is True:
        return LoraConfig()
    if isinstance(spec, dict):
        pairs = list(spec.items())
    elif isinstance(spec, str):
        pairs, key = [], None
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if "=" in part:
                key, _, value = part.partition("=")
                pairs.append((key.strip(), value.strip()))
            elif key is not None and _SPEC_KEYS.get(key) in _LIST_FIELDS:
                pairs.append((key, part))
            else:
                raise AdapterConfigError(
                    f"{source}: {part!r} is not key=value; write e.g. r=8,alpha=16,targets=c_attn,c_proj"
                )
    else:
        raise AdapterConfigError(f"{source} must be a string such as r=8,alpha=16 or a mapping")
    for key, value in pairs:
        field_name = _SPEC_KEYS.get(str(key).replace("-", "_"))
        if field_name is None:
            raise AdapterConfigError(
                f"{source}: unknown key {key!r}; use {', '.join(sorted(set(_SPEC_KEYS) - set(_SPEC_KEYS.values())))} "
                "(or peft's names lora_alpha, target_modules, ...)"
            )
        if field_name in _LIST_FIELDS:
            values = value if isinstance(value, list) else [value]
            if field_name == "layers_to_transform":
                values = [int(v) for v in values]
            items.setdefault(field_name, []).extend(values)
            continue
        items[field_name] = _spec_value(field_name, value, source)
    if isinstance(items.get("target_modules"), list) and items["target_modules"] == ["all-linear"]:
        items["target_modules"] = "all-linear"
    return LoraConfig(**items)


def _spec_value(field_name: str, value: Any, source: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if field_name == "r":
            return int(value)
        if field_name == "lora_alpha":
            number = float(value)
            return int(number) if number.is_integer() else number
        if field_name == "lora_dropout":
            return float(value)
    except ValueError:
        raise AdapterConfigError(f"{source}: {field_name}={value!r} is not a number") from None
    if field_name in ("use_rslora", "init_lora_weights") and value.lower() in (
        "true",
        "false",
        "1",
        "0",
    ):
        return value.lower() in ("true", "1")
    return value
