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

# `QuantizationConfig.input_activations`: how a product of more than `ACTIVATION_ROWS` rows
# (a prompt's prefill, an evaluation batch) treats its input. None: fp32 activations times
# the dequantized weight (weight-only, the reference); "int8": dynamic symmetric per-token
# int8 activations times the int8 weight in an int8 GEMM (W8A8); "bfloat16": activations
# and the dequantized weight rounded to bf16, products accumulated in fp32 (W*A16).
INPUT_ACTIVATIONS = (None, "int8", "bfloat16")
AUTO = "auto"  # (the default: "int8" for int8 weights, "bfloat16" for int4)

# compressed-tensors' description of "int8" (what vLLM runs as W8A8 dynamic per token)
INT8_TOKEN_DYNAMIC = {
    "num_bits": 8,
    "type": "int",
    "symmetric": True,
    "strategy": "token",
    "dynamic": True,
}


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
        input_activations: how products of more than 32 rows (a prompt's prefill, an
            evaluation batch; fewer rows always multiply fp32 activations, see
            `ACTIVATION_ROWS`) treat their input: `"int8"` (int8 weights only) quantizes
            each row of the input to int8 with its own scale (`max|x_row| / 127`, computed
            per call: compressed-tensors' dynamic per-token scheme) and multiplies in an
            int8 GEMM (`torch._int_mm`); `"bfloat16"` rounds the input and the dequantized
            weight to bf16 (fp32 accumulation); `None` multiplies fp32 activations by the
            dequantized weight (weight-only; the slowest prompt, numerically the reference).
            Default (`"auto"`): `"int8"` for int8 weights, `"bfloat16"` for int4 (measured
            in docs/quantization.md: held-out perplexity of the bundled model +0.08% /
            -0.03% against weight-only; prompts about 6x / 2x faster than fp32 products).
    """

    bits: int = 8
    group_size: int | None = None
    modules_to_not_convert: tuple[str, ...] = field(default_factory=tuple)
    input_activations: str | None = AUTO

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
        acts = self.input_activations
        if acts == AUTO:
            acts = "int8" if self.bits == 8 else "bfloat16"
        if isinstance(acts, str):
            acts = {"bf16": "bfloat16", "none": None, "fp32": None, "float32": None}.get(
                acts.lower(), acts.lower()
            )
        if acts not in INPUT_ACTIVATIONS:
            raise ValueError(
                f"QuantizationConfig(input_activations={self.input_activations!r}): one of "
                "'int8' (dynamic per-token int8, int8 weights), 'bfloat16', None (fp32: "
                "weight-only)"
            )
        if acts == "int8" and self.bits != 8:
            raise ValueError(
                "QuantizationConfig(bits=4, input_activations='int8'): int8 activations "
                "need int8 weights (one scale per output channel); int4's per-group scales "
                "would need one int8 GEMM per group (measured ~30x slower than bf16): use "
                "input_activations='bfloat16' or None"
            )
        object.__setattr__(self, "input_activations", acts)

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
        # ("w8a16" / "w4a16": 16-bit activations, as compressed-tensors / vLLM name the
        # weight-only schemes; "w8a8": int8 activations, the int8 default)
        if key in ("int8", "w8a8", "8bit"):
            return QuantizationConfig(bits=8)
        if key == "w8a16":
            return QuantizationConfig(bits=8, input_activations="bfloat16")
        if key in ("int4", "w4a16", "4bit"):
            return QuantizationConfig(bits=4)
        raise ValueError(
            f"{name}={value!r}: unknown quantization; use 'int8', 'int4' (or 'w8a8', "
            "'w8a16', 'w4a16')"
        )
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
    known = {"bits", "group_size", "modules_to_not_convert", "quant_method", "input_activations"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {unknown}; known: {sorted(known)}")
    return QuantizationConfig(
        bits=d.get("bits", 8),
        group_size=d.get("group_size"),
        modules_to_not_convert=tuple(d.get("modules_to_not_convert") or ()),
        input_activations=d.get("input_activations", AUTO),
    )


def from_compressed_tensors(
    d: dict[str, Any], name: str = "quantization_config"
) -> QuantizationConfig:
    """A compressed-tensors `quantization_config` with one group -> our config: weight-only
    (`input_activations` null: the scheme's activations are 16-bit, gpt2kit's "bfloat16")
    or int8 weights with dynamic per-token int8 activations ("int8")."""
    groups = d.get("config_groups") or {}
    if len(groups) != 1:
        raise ValueError(f"{name}: gpt2kit reads one config group, found {len(groups)}")
    group = next(iter(groups.values()))
    w = group.get("weights") or {}
    acts = group.get("input_activations")
    if group.get("output_activations") or (acts and not _is_int8_token_dynamic(acts)):
        raise ValueError(
            f"{name}: activation quantization {acts or group.get('output_activations')} is not "
            "supported; gpt2kit reads weight-only int8/int4 and int8 weights with dynamic "
            f"per-token int8 input activations ({INT8_TOKEN_DYNAMIC})"
        )
    activations = "int8" if acts else "bfloat16"
    if w.get("type", "int") != "int" or not w.get("symmetric", True):
        raise ValueError(f"{name}: only symmetric int weights are supported, got {w}")
    bits, strategy = w.get("num_bits"), w.get("strategy")
    if bits == 8 and strategy == "channel":
        return QuantizationConfig(
            bits=8,
            modules_to_not_convert=tuple(d.get("ignore") or ()),
            input_activations=activations,
        )
    if bits == 4 and strategy == "group" and activations != "int8":
        return QuantizationConfig(
            bits=4,
            group_size=w.get("group_size"),
            modules_to_not_convert=tuple(d.get("ignore") or ()),
            input_activations=activations,
        )
    raise ValueError(
        f"{name}: num_bits={bits}, strategy={strategy!r} is not supported; gpt2kit reads "
        "int8 'channel' and int4 'group'"
    )


def _is_int8_token_dynamic(acts: Any) -> bool:
    return isinstance(acts, dict) and all(
        acts.get(k, v if k == "symmetric" else None) == v for k, v in INT8_TOKEN_DYNAMIC.items()
    )


def to_compressed_tensors(config: QuantizationConfig) -> dict[str, Any]:
    """The compressed-tensors `quantization_config` for `config` (written to config.json).

    `input_activations` "int8" is written as compressed-tensors' dynamic per-token int8
    scheme; "bfloat16" and None as weight-only (null: compressed-tensors has no fp32
    activation scheme, so a folder saved with None loads back as "bfloat16")."""
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
                "input_activations": (
                    dict(INT8_TOKEN_DYNAMIC, group_size=None, observer=None)
                    if config.input_activations == "int8"
                    else None
                ),
                "output_activations": None,
            }
        },
        "ignore": list(config.modules_to_not_convert),
        "kv_cache_scheme": None,
        "global_compression_ratio": None,
    }
