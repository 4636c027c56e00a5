"""Checkpoint files <-> gpt2kit modules. Every file-format detail lives here.

Formats read: `model.safetensors`, sharded safetensors with `model.safetensors.index.json`,
`pytorch_model.bin` (and its sharded index) read with `torch.load(weights_only=True)`.
Format written: safetensors, sharded past `max_shard_size`, exactly as `transformers` does.

What differs between the files and our modules, and is fixed here only:
- The files store attention/MLP projections as `Conv1D` weights `[in, out]`; our modules
  are `nn.Linear` `[out, in]`: transposed on load and save.
- A bare `GPT2Model` checkpoint has keys `h.0...`; task models have `transformer.h.0...`.
  Either loads into either.
- `attn.bias` / `attn.masked_bias` are causal-mask buffers old files carry: dropped.
- `lm_head.weight` is tied to `transformer.wte.weight`: not written (as `transformers`
  does), restored by tying on load.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import GPT2Config
from .hub import HubError, HubOptions, resolve_folder

logger = logging.getLogger("gpt2kit")

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
CONFIG = "config.json"
_WEIGHT_FILE = re.compile(
    r"^(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)(\.index\.json)?$"
)
# Self- and cross-attention (`crossattention.c_attn`: "attn." alone would miss it) and MLP.
_CONV1D = re.compile(
    r"(\b(attn|crossattention)\.(c_attn|q_attn|c_proj)|mlp\.(c_fc|c_proj))\.weight$"
)
_MASK_BUFFER = re.compile(r"(^|\.)(attn|crossattention)\.(bias|masked_bias)$")
_BACKBONE_KEY = re.compile(r"^(wte|wpe|h\.\d+|ln_f)\.")
_CROSS_KEY = re.compile(r"\.(crossattention|ln_cross_attn)\.")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message says which and why."""


@dataclass
class LoadReport:
    """What a load did beyond copying matching weights."""

    new_keys: list[str] = field(default_factory=list)  # head weights initialized here
    dropped_keys: list[str] = field(default_factory=list)  # another head's weights, not used
    mismatched_keys: list[str] = field(default_factory=list)  # re-initialized (when allowed)
    unexpected_keys: list[str] = field(default_factory=list)  # ignored (when allowed)


# -- locating files ------------------------------------------------------------------------------
def resolve_checkpoint_dir(
    name_or_path: str | os.PathLike, hub_options: HubOptions | None = None
) -> Path:
    """A local folder as is; otherwise a Hub id downloaded (and cached) through `gpt2kit.hub`."""
    try:
        return resolve_folder(name_or_path, hub_options)
    except HubError as err:
        raise CheckpointError(str(err)) from err


def _read_safetensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({err}); it is probably truncated or "
            "corrupted: download or save it again"
        ) from err


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds Python objects beyond tensors, and loading it would run arbitrary code; "
            "gpt2kit only reads weights (torch.load(weights_only=True)). Convert it to "
            f"safetensors in a trusted environment. ({err})"
        ) from err
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({err}); it is probably truncated or "
            "corrupted: download or save it again"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def _read_index(path: Path) -> list[Path]:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is not a valid shard index ({err})") from err
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (path.parent / s).is_file()]
    if missing:
        raise CheckpointError(f"{path} names shards that are not there: {', '.join(missing)}")
    return [path.parent / s for s in shards]


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in `folder`, keys as stored in the files."""
    if (folder / SAFE_INDEX).is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in _read_index(folder / SAFE_INDEX):
            state.update(_read_safetensors(shard))
        return state
    if (folder / SAFE_WEIGHTS).is_file():
        return _read_safetensors(folder / SAFE_WEIGHTS)
    if (folder / BIN_INDEX).is_file():
        state = {}
        for shard in _read_index(folder / BIN_INDEX):
            state.update(_read_bin(shard))
        return state
    if (folder / BIN_WEIGHTS).is_file():
        return _read_bin(folder / BIN_WEIGHTS)
    raise CheckpointError(
        f"no weights in {folder}: expected {SAFE_WEIGHTS}, {SAFE_INDEX}, {BIN_WEIGHTS} or {BIN_INDEX}"
    )


# -- key mapping ---------------------------------------------------------------------------------
def from_hf_state_dict(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """File keys/layout -> our module keys/layout, for a model whose backbone sits at `prefix`."""
    out = {}
    for key, tensor in state.items():
        if _MASK_BUFFER.search(key):
            continue
        if prefix and _BACKBONE_KEY.match(key):
            key = prefix + key  # a bare GPT2Model checkpoint loaded into a task model
        elif not prefix and key.startswith("transformer."):
            key = key[len("transformer.") :]  # a task checkpoint loaded into GPT2Model
        if _CONV1D.search(key) and tensor.dim() == 2:
            tensor = tensor.t()
        out[key] = tensor
    return out


def to_hf_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our module state -> the keys/layout `transformers` writes (Conv1D, no tied copy)."""
    state = model.state_dict()
    tied = getattr(model.config, "tie_word_embeddings", True)
    out = {}
    for key, tensor in state.items():
        if tied and key.endswith("lm_head.weight"):
            continue
        if _CONV1D.search(key) and tensor.dim() == 2:
            tensor = tensor.t()
        tensor = tensor.contiguous()
        if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
            # a view into a larger buffer (the decode arena, `use_decode_layout`): safetensors
            # refuses tensors that share memory, and torch.save would write the whole buffer
            tensor = tensor.clone()
        out[key] = tensor
    return out


# -- loading -------------------------------------------------------------------------------------
def _resolve_dtype(dtype: torch.dtype | str | None, state: dict[str, torch.Tensor]) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if dtype == "auto":
        floats = [t.dtype for t in state.values() if t.is_floating_point()]
        return floats[0] if floats else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.replace("torch.", ""), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype (try 'float32' or 'bfloat16')")
        return resolved
    return dtype


def load_model(
    cls: type,
    name_or_path: str | os.PathLike,
    *,
    config: GPT2Config | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    ignore_mismatched_sizes: bool = False,
    ignore_unexpected_keys: bool = False,
    config_overrides: dict[str, Any] | None = None,
    hub_options: HubOptions | None = None,
    read_state: Any = None,
) -> tuple[torch.nn.Module, LoadReport]:
    """Build `cls` from the checkpoint at `name_or_path`; see `GPT2PreTrainedModel.from_pretrained`."""
    folder = resolve_checkpoint_dir(name_or_path, hub_options)
    if config is None:
        if not (folder / CONFIG).is_file():
            raise CheckpointError(
                f"{folder} has no {CONFIG}; pass config=GPT2Config(...) or fix the path"
            )
        config = GPT2Config.from_json_file(folder / CONFIG)
    if config_overrides:
        config = config.copy(**config_overrides)
    prefix = f"{cls.base_model_prefix}." if cls.base_model_prefix else ""
    # (`read_state`: a quantized folder's reader, `gpt2kit.quantization.files`)
    raw = (read_state or read_state_dict)(folder)
    dtype = _resolve_dtype(dtype, raw)
    state = from_hf_state_dict(raw, prefix)
    device = torch.device(device) if device is not None else torch.device("cpu")

    # Build on the meta device (no random init of weights about to be overwritten), then
    # allocate for real and copy.
    with torch.device("meta"):
        model = cls(config)
    model.to_empty(device=device)
    model.to(dtype)
    model.tie_weights()

    expected = model.state_dict()
    report = LoadReport()
    unexpected_backbone = []
    for key in list(state):
        if key not in expected:
            if prefix and not key.startswith(prefix) or not prefix and not _BACKBONE_KEY.match(key):
                report.dropped_keys.append(key)  # another task's head
            else:
                unexpected_backbone.append(key)
            del state[key]
        elif state[key].shape != expected[key].shape:
            msg = (
                f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
            )
            if not ignore_mismatched_sizes:
                raise CheckpointError(
                    f"shape mismatch in {folder}: {msg}. If the head is meant to change (e.g. a "
                    "different num_labels), pass ignore_mismatched_sizes=True to re-initialize it"
                )
            report.mismatched_keys.append(msg)
            del state[key]
    if unexpected_backbone:
        if not ignore_unexpected_keys:
            raise CheckpointError(
                f"{folder} has weights the model does not: {', '.join(unexpected_backbone[:8])}"
                f"{' ...' if len(unexpected_backbone) > 8 else ''}. Does config.json match the "
                "weights? Pass ignore_unexpected_keys=True to drop them"
            )
        report.unexpected_keys = unexpected_backbone
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    reinit = {m.split(":")[0] for m in report.mismatched_keys}
    missing = [k for k in expected if k not in state and k not in tied and k not in reinit]
    missing_backbone = [k for k in missing if k.startswith(prefix)] if prefix else missing
    # Cross-attention added on top of a plain checkpoint (encoder-decoder) is a new head part.
    missing_backbone = [k for k in missing_backbone if not _CROSS_KEY.search(k)]
    if missing_backbone:
        raise CheckpointError(
            f"{folder} lacks backbone weights: {', '.join(missing_backbone[:8])}"
            f"{' ...' if len(missing_backbone) > 8 else ''}; the file is incomplete or not a GPT-2 "
            "checkpoint of this size"
        )
    report.new_keys = missing

    with torch.no_grad():
        for key, tensor in state.items():
            expected[key].copy_(tensor)
        _init_keys(model, missing + sorted(reinit))
    model.tie_weights()
    model.eval()
    if (folder / "generation_config.json").is_file():
        # Decoding defaults saved with the checkpoint become `generate`'s defaults.
        from .generation.config import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(folder)
    # A model may fill new weights from loaded ones (an encoder copied from the backbone);
    # it does so before the report is logged, so the log names only what is really new.
    model.complete_loading(report)
    if report.new_keys or report.dropped_keys:
        logger.warning(
            "%s from %s: newly initialized %s%s",
            cls.__name__,
            name_or_path,
            ", ".join(report.new_keys) or "nothing",
            f"; not used (another head): {', '.join(report.dropped_keys)}"
            if report.dropped_keys
            else "",
        )
    return model, report


def _init_keys(model: torch.nn.Module, keys: list[str]) -> None:
    """Run the model's initializer on the modules owning `keys` (weights no file provided)."""
    owners = {key.rsplit(".", 1)[0] for key in keys}
    for name in owners:
        module = model.get_submodule(name) if name else model
        model._init_module(module)  # type: ignore[operator]


# -- saving --------------------------------------------------------------------------------------
def parse_size(size: int | str) -> int:
    """`5GB` -> 5e9 bytes (decimal units, `GiB` binary), as `transformers` reads shard sizes."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", size, flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"max_shard_size {size!r} is not a size such as '5GB' or '500MB'")
    number, unit = float(match[1]), (match[2] or "B").upper()
    powers = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    powers.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
    return int(number * powers[unit])


def _shards(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        n = tensor.numel() * tensor.element_size()
        if shards[-1] and size + n > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += n
    return shards


def write_weights(state: dict[str, torch.Tensor], folder: Path, max_shard_size: int | str) -> None:
    from safetensors.torch import save_file

    shards = _shards(state, parse_size(max_shard_size))
    if len(shards) == 1:
        save_file(shards[0], str(folder / SAFE_WEIGHTS), metadata={"format": "pt"})
        return
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        for key, tensor in shard.items():
            weight_map[key] = name
            total += tensor.numel() * tensor.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / SAFE_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def atomic_folder(target: Path) -> _AtomicFolder:
    """Context manager yielding a scratch folder that replaces `target` only on success."""
    return _AtomicFolder(target)


class _AtomicFolder:
    """Build a folder beside `target`, then swap it in with renames.

    Files already in `target` that this save does not write (a training log, a README) are
    carried over; old weight files are not, so a smaller re-save leaves no stale shards.
    An exception (or a kill) before the swap leaves `target` as it was.
    """

    def __init__(self, target: Path):
        self.target = Path(target)

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent)
        )
        # mkdtemp makes the folder private (0700); a saved checkpoint gets the permissions
        # of an ordinary `mkdir` (0777 minus the umask) so others can read it.
        umask = os.umask(0)
        os.umask(umask)
        self.tmp.chmod(0o777 & ~umask)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.target.exists():
            if not self.target.is_dir():
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise CheckpointError(f"{self.target} exists and is not a folder")
            for item in self.target.iterdir():
                if not (self.tmp / item.name).exists() and not _WEIGHT_FILE.match(item.name):
                    dest = self.tmp / item.name
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest)
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)


def save_model(
    model: torch.nn.Module,
    directory: str | os.PathLike,
    *,
    max_shard_size: int | str = "5GB",
    tokenizer: Any = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `model` as a Hugging Face folder; see `GPT2PreTrainedModel.save_pretrained`."""
    target = Path(directory)
    state = to_hf_state_dict(model)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    state = {k: v.detach().cpu() for k, v in state.items()}
    config = model.config.copy(architectures=[model.hf_architecture or type(model).__name__])
    with atomic_folder(target) as tmp:
        write_weights(state, tmp, max_shard_size)
        config.save_pretrained(tmp)
        generation_config = getattr(model, "generation_config", None)
        if generation_config is not None:
            generation_config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return target
