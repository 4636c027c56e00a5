"""`QuantizationConfig`: what `from_pretrained(..., quantization=...)` quantizes, and how.

Accepted forms (`resolve`): `"int8"` / `"int4"`; a `QuantizationConfig`; a dict of its
fields (`{"bits": 4, "group_size": 64}`); a compressed-tensors `quantization_config` as
`config.json` holds it (what `gpt2kit convert --quantize` writes, and what llm-compressor
writes for weight-only int8 channel / int4 group schemes); any object with `to_dict()`
returning one of those (transformers-style config objects). Anything else is an error
naming the value: a model never silently loads in fp32 when quantization was asked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .tensor import DEFAULT_GROUP_SIZE

METHODS = ("int8", "int4")


@dataclass(frozen=True)
class QuantizationConfig:
    """Weight-only quantization of every linear layer and the (tied) LM head.

    Args:
        bits: 8 (one scale per output channel) or 4 (one scale per `group_size` inputs).
        group_size: int4 only: inputs per scale, a multiple of 16 (default 32; a row's last
            group may be shorter, e.g. 120 = 32 + 32 + 32 + 24). Smaller groups: more
            accurate, more scale bytes per weight (fp32 scale per group: 1 bit per weight
            at 32).
        modules_to_not_convert: names (or name suffixes, e.g. `"lm_head"`) of linear
            layers kept in floating point.
    """

    bits: int = 8
    group_size: int | None = None
    modules_to_not_convert: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.bits not in (8, 4):
            raise ValueError(f"QuantizationConfig(bits={self.bits!r}): bits must be 8 or 4")
        if self.bits == 8 and self.group_size is not None:
            raise ValueError(
                "QuantizationConfig(bits=8, group_size=...): int8 uses one scale per output "
                "channel; drop group_size (or use bits=4)"
            )
        if self.bits == 4:
            size = DEFAULT_GROUP_SIZE if self.group_size is None else self.group_size
            if not isinstance(size, int) or size <= 0 or size % 16:
                raise ValueError(
                    f"QuantizationConfig(group_size={self.group_size!r}): a positive multiple "
                    "of 16 (32, 64, 128)"
                )
            object.__setattr__(self, "group_size", size)
        object.__setattr__(self, "modules_to_not_convert", tuple(self.modules_to_not_convert))

    @property
    def method(self) -> str:
        return f"int{self.bits}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def skips(self, name: str) -> bool:
        return any(name == n or name.endswith("." + n) for n in self.modules_to_not_convert)


def resolve(quantization: Any = None, quantization_config: Any = None) -> QuantizationConfig | None:
    """The `QuantizationConfig` that `quantization=` / `quantization_config=` ask for (None:
    no quantization); `ValueError` naming the value for anything unknown."""
    if quantization is not None and quantization_config is not None:
        raise ValueError("pass quantization=... or quantization_config=..., not both")
    value = quantization if quantization is not None else quantization_config
    name = "quantization" if quantization is not None else "quantization_config"
    if value is None:
        return None
    if isinstance(value, QuantizationConfig):
        return value
    if isinstance(value, str):
        key = value.lower().replace("-", "").replace("_", "")
        if key in ("int8", "w8a16", "8bit"):
            return QuantizationConfig(bits=8)
        if key in ("int4", "w4a16", "4bit"):
            return QuantizationConfig(bits=4)
        raise ValueError(f"{name}={value!r}: unknown quantization; use 'int8' or 'int4'")
    if not isinstance(value, dict) and callable(getattr(value, "to_dict", None)):
        value = value.to_dict()
    if isinstance(value, dict):
        return _from_dict(value, name)
    raise ValueError(
        f"{name}={value!r}: expected 'int8', 'int4', a gpt2kit.QuantizationConfig or a dict"
    )


def _from_dict(d: dict[str, Any], name: str) -> QuantizationConfig:
    if d.get("quant_method") == "compressed-tensors":
        return from_compressed_tensors(d, name)
    if d.get("quant_method") not in (None, "gpt2kit"):
        raise ValueError(
            f"{name}: quant_method={d.get('quant_method')!r} is not supported; gpt2kit reads "
            "weight-only int8/int4 (quantization='int8' / 'int4', or compressed-tensors)"
        )
    known = {"bits", "group_size", "modules_to_not_convert", "quant_method"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {unknown}; known: {sorted(known)}")
    return QuantizationConfig(
        bits=d.get("bits", 8),
        group_size=d.get("group_size"),
        modules_to_not_convert=tuple(d.get("modules_to_not_convert") or ()),
    )


def from_compressed_tensors(
    d: dict[str, Any], name: str = "quantization_config"
) -> QuantizationConfig:
    """A compressed-tensors `quantization_config` with one weight-only group -> our config."""
    groups = d.get("config_groups") or {}
    if len(groups) != 1:
        raise ValueError(f"{name}: gpt2kit reads one config group, found {len(groups)}")
    group = next(iter(groups.values()))
    w = group.get("weights") or {}
    if group.get("input_activations") or group.get("output_activations"):
        raise ValueError(
            f"{name}: activation quantization is not supported (weight-only int8/int4)"
        )
    if w.get("type", "int") != "int" or not w.get("symmetric", True):
        raise ValueError(f"{name}: only symmetric int weights are supported, got {w}")
    bits, strategy = w.get("num_bits"), w.get("strategy")
    if bits == 8 and strategy == "channel":
        return QuantizationConfig(bits=8, modules_to_not_convert=tuple(d.get("ignore") or ()))
    if bits == 4 and strategy == "group":
        return QuantizationConfig(
            bits=4,
            group_size=w.get("group_size"),
            modules_to_not_convert=tuple(d.get("ignore") or ()),
        )
    raise ValueError(
        f"{name}: num_bits={bits}, strategy={strategy!r} is not supported; gpt2kit reads "
        "int8 'channel' and int4 'group'"
    )


def to_compressed_tensors(config: QuantizationConfig) -> dict[str, Any]:
    """The compressed-tensors `quantization_config` for `config` (written to config.json)."""
    weights = {
        "num_bits": config.bits,
        "type": "int",
        "symmetric": True,
        "strategy": "channel" if config.bits == 8 else "group",
        "group_size": None if config.bits == 8 else config.group_size,
        "dynamic": False,
        "actorder": None,
        "observer": "minmax",
        "observer_kwargs": {},
    }
    return {
        "quant_method": "compressed-tensors",
        "format": "int-quantized" if config.bits == 8 else "pack-quantized",
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": weights,
                "input_activations": None,
                "output_activations": None,
            }
        },
        "ignore": list(config.modules_to_not_convert),
        "kv_cache_scheme": None,
        "global_compression_ratio": None,
    }
