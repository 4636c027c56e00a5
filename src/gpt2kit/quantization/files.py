"""Quantized checkpoint folders: compressed-tensors tensors and `quantization_config`.

Written by `save_quantized` (`gpt2kit convert SRC DST --quantize int8|int4`,
`model.save_pretrained` of a quantized model); read by `QuantizedReader`, which
`from_pretrained` passes to the checkpoint loader. The layout (docs/checkpoints.md):

- int8 layer `P`: `P.weight` int8 `[out, in]`, `P.weight_scale` fp32 `[out, 1]`;
- int4 layer `P`: `P.weight_packed` int32 `[out, in / 8]` (compressed-tensors'
  `pack_to_int32`: eight values per word, value i at bits 4i, stored as q + 8),
  `P.weight_scale` fp32 `[out, groups]`, `P.weight_shape` int32 `[2]`;
- quantized weights are in `nn.Linear` orientation `[out, in]`, also for GPT-2's Conv1D
  layers (compressed-tensors quantizes `Linear` weights; the fp32 files store Conv1D
  layers `[in, out]`);
- a tied LM head is stored once, as the token embedding `transformer.wte.weight` (int8 or
  packed) with its `weight_scale` (compressed-tensors leaves embeddings in floating point;
  for GPT-2 small the embedding is 31% of the fp32 bytes, so it is quantized too);
- everything else (norms, biases, the position embedding) as in an fp32 folder.

Reading dequantizes each stored matrix to fp32 for the loader and keeps the stored
integers and scales; `finish` then builds the quantized modules from those exactly (no
second rounding). Peak memory while loading: the fp32 model once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import _CONV1D, atomic_folder, read_state_dict, to_hf_state_dict, write_weights
from . import tensor as qt
from .config import QuantizationConfig, from_compressed_tensors, resolve, to_compressed_tensors
from .modules import QuantizedEmbedding, QuantizedLinear, quantize_model


def _conv1d(key: str) -> bool:
    return bool(_CONV1D.search(key))


def folder_quantization(folder: Path) -> QuantizationConfig | None:
    """The `quantization_config` of the folder's config.json, parsed (None: not quantized)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text()).get("quantization_config")
    if raw is None:
        return None
    try:
        return from_compressed_tensors(raw, f"{path}: quantization_config")
    except ValueError as err:
        raise ValueError(f"{err}. The folder cannot be loaded by gpt2kit") from None


class QuantizedReader:
    """The checkpoint loader's state reader for a folder that may be quantized: fp32 weights
    for the loader, the stored integers and scales kept in `stored` (file key prefix ->
    (int values `[out, in]` int8, scales))."""

    def __init__(self) -> None:
        self.config: QuantizationConfig | None = None
        self.stored: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, folder: Path) -> dict[str, torch.Tensor]:
        raw = read_state_dict(folder)
        self.config = folder_quantization(folder)
        if self.config is None:
            return raw
        bits, group = self.config.bits, self.config.group_size
        for key in [k for k in raw if k.endswith(".weight_scale")]:
            base = key[: -len(".weight_scale")]
            scale = raw.pop(key).float()
            if bits == 4:
                shape = raw.pop(f"{base}.weight_shape", None)
                packed = raw.pop(f"{base}.weight_packed", None)
                if packed is None or shape is None:
                    raise ValueError(
                        f"{folder}: {base} has weight_scale but no weight_packed/weight_shape"
                    )
                q = qt.from_compressed_int4(packed, int(shape[1]))
                w = qt.dequantize_int4_values(q, scale, group)  # type: ignore[arg-type]
            else:
                q = raw.pop(f"{base}.weight", None)
                if q is None or q.dtype != torch.int8:
                    raise ValueError(
                        f"{folder}: {base}.weight must be int8 beside its weight_scale"
                    )
                scale = scale.reshape(-1)
                w = qt.dequantize_int8(q, scale)
            self.stored[base] = (q, scale)
            name = f"{base}.weight"
            raw[name] = w.t() if _conv1d(name) else w
        return raw

    def lookup(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        for key in (name, name.removeprefix("transformer."), f"transformer.{name}"):
            if key in self.stored:
                return self.stored[key]
        return None


def finish(
    model: nn.Module, requested: QuantizationConfig | None, reader: QuantizedReader
) -> nn.Module:
    """Quantize a just-loaded model: with the folder's stored integers where it is
    quantized, else (`requested`) from its fp32 weights."""
    stored = reader.config
    if stored is None:
        return quantize_model(model, requested) if requested is not None else model
    if requested is not None and (requested.bits, requested.group_size) != (
        stored.bits,
        stored.group_size,
    ):
        raise ValueError(
            f"the folder is quantized as {stored.method}"
            f"{f' (group_size={stored.group_size})' if stored.bits == 4 else ''}; it loads as "
            f"that only: drop quantization=... (or convert the fp32 folder with --quantize {requested.method})"
        )
    if requested is not None:  # (how prompts multiply is the caller's choice, not stored)
        stored = dataclasses.replace(stored, input_activations=requested.input_activations)
    quantize_model(model, stored)
    embedding = model.get_input_embeddings()
    for name, module in model.named_modules():
        if type(module) is not QuantizedLinear:
            continue
        entry = reader.lookup(name)
        if entry is None and name.endswith("lm_head") and isinstance(embedding, QuantizedEmbedding):
            entry = reader.lookup("transformer.wte") or reader.lookup("wte")
        if entry is None:
            continue  # (a new head: quantized from its fresh weights)
        q, scale = entry
        with torch.no_grad():
            if module.bits == 8:
                module.qweight = q.contiguous().to(module.qweight.device)
                module.weight_scale = scale.reshape(-1).contiguous().to(module.weight_scale.device)
            else:
                module.qweight = qt.pack_int4(q, module.group_size).to(module.qweight.device)
                module.weight_scale = scale.contiguous().to(module.weight_scale.device)
    return model


def quantized_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The file tensors of a quantized model (see the module docstring)."""
    config: QuantizationConfig = model.quantization_config  # type: ignore[assignment]
    tied = isinstance(model.get_input_embeddings(), QuantizedEmbedding)
    state = {}
    for key, t in to_hf_state_dict(model).items():
        if key.endswith((".qweight", ".weight_scale")):
            continue
        state[key] = t
    for name, module in model.named_modules():
        if type(module) is not QuantizedLinear:
            continue
        base = name
        if tied and name.endswith("lm_head"):
            base = name[: -len("lm_head")] + "transformer.wte"
        q = module.int_values().cpu()
        if config.bits == 8:
            state[f"{base}.weight"] = q.contiguous()
            state[f"{base}.weight_scale"] = module.weight_scale.cpu().reshape(-1, 1).contiguous()
        else:
            state[f"{base}.weight_packed"] = qt.to_compressed_int4(q)
            state[f"{base}.weight_scale"] = module.weight_scale.cpu().contiguous()
            state[f"{base}.weight_shape"] = torch.tensor(list(q.shape), dtype=torch.int32)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_quantized(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    max_shard_size: int | str = "5GB",
    tokenizer: Any = None,
) -> Path:
    """Write a quantized model's folder (atomic, as `save_pretrained`)."""
    config: QuantizationConfig = model.quantization_config  # type: ignore[assignment]
    target = Path(directory)
    state = quantized_state(model)
    mc = model.config.copy(
        architectures=[model.hf_architecture or type(model).__name__],
        quantization_config=to_compressed_tensors(config),
    )
    with atomic_folder(target) as tmp:
        write_weights(state, tmp, max_shard_size)
        mc.save_pretrained(tmp)
        generation_config = getattr(model, "generation_config", None)
        if generation_config is not None:
            generation_config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return target


__all__ = ["QuantizedReader", "finish", "folder_quantization", "resolve", "save_quantized"]
