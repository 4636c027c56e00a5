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

import errno
import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import socket
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
    local = Path(name_or_path)
    if not local.exists() and local.parent.is_dir():
        recover_folder(local)  # a save of this folder was killed mid-swap
    try:
        return resolve_folder(name_or_path, hub_options)
    except HubError as err:
        raise CheckpointError(str(err)) from err


def _read_safetensors(
    path: Path, device: str = "cpu", keys: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file; only `keys` when given (a shard of an index)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        if keys is None:
            return load_file(str(path), device=device)
        with safe_open(str(path), framework="pt", device=device) as f:
            present = set(f.keys())  # noqa: SIM118 - safe_open is not iterable
            missing = [k for k in keys if k not in present]
            if missing:
                raise CheckpointError(
                    f"{path} lacks {len(missing)} tensor(s) its index assigns to it: "
                    f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}; the shard is "
                    "incomplete or the index is stale: download or save the checkpoint again"
                )
            return {k: f.get_tensor(k) for k in keys}
    except CheckpointError:
        raise
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


def _shard_path(index: Path, name: str) -> Path:
    """The shard file `name` of `index`, refused (without touching it) unless it is a plain
    file name inside the index's folder: an index from the Hub must not make us read
    `/etc/passwd`, `../secrets.safetensors` or a symlink out of the folder."""
    if (
        not name
        or os.path.isabs(name)
        or "\\" in name
        or any(part in ("..", "") for part in name.split("/"))
        or ":" in name
    ):
        raise CheckpointError(
            f"{index} names the shard {name!r}, a path outside the checkpoint folder; a shard "
            "must be a file name inside the folder (e.g. model-00001-of-00002.safetensors)"
        )
    path = index.parent / name
    root = index.parent.resolve()
    if path.is_symlink() and not path.resolve().is_relative_to(root):
        raise CheckpointError(
            f"{index} names the shard {name!r}, a link to {path.resolve()} outside the folder"
        )
    return path


def read_index(path: Path) -> dict[Path, list[str]]:
    """Shard file -> the keys the index `path` assigns to it (in index order), checked: the
    index is JSON with a `weight_map` of string keys to shard file names inside the folder,
    and every shard is there."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not a valid shard index ({err})") from err
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{path} is not a valid shard index: expected an object with a non-empty "
            "'weight_map' of tensor name -> shard file name"
        )
    shards: dict[Path, list[str]] = {}
    for key, name in weight_map.items():
        if not isinstance(name, str):
            raise CheckpointError(
                f"{path}: weight_map[{key!r}] is {name!r} ({type(name).__name__}); expected a "
                "shard file name (a string)"
            )
        shards.setdefault(_shard_path(path, name), []).append(key)
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise CheckpointError(f"{path} names shards that are not there: {', '.join(missing)}")
    return shards


def _read_index(path: Path) -> list[Path]:
    return list(read_index(path))


def _read_sharded(index: Path, safetensors: bool) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded checkpoint, each from the shard its index names.

    A key the index assigns to one shard and another shard also holds is an error (which
    copy is meant cannot be known); keys of a shard the index does not list are ignored, as
    `transformers` does, with a warning."""
    shards = read_index(index)
    owner = {key: shard for shard, keys in shards.items() for key in keys}
    state: dict[str, torch.Tensor] = {}
    for shard, keys in shards.items():
        if safetensors:
            from safetensors import safe_open

            try:
                with safe_open(str(shard), framework="pt") as f:
                    present = list(f.keys())  # noqa: SIM118
            except Exception as err:
                raise CheckpointError(
                    f"{shard} is not a readable safetensors file ({err}); it is probably "
                    "truncated or corrupted: download or save it again"
                ) from err
            tensors = None
        else:
            tensors = _read_bin(shard)
            present = list(tensors)
        for key in present:
            if key in owner and owner[key] != shard:
                raise CheckpointError(
                    f"{shard.name} holds {key!r}, which {index.name} assigns to "
                    f"{owner[key].name}: two copies of one tensor; remove it from one shard "
                    "or fix the index"
                )
        unlisted = [k for k in present if k not in owner]
        if unlisted:
            logger.warning(
                "%s holds tensors %s not listed in %s: ignored",
                shard,
                ", ".join(unlisted[:8]),
                index.name,
            )
        if tensors is None:
            state.update(_read_safetensors(shard, keys=keys))
        else:
            missing = [k for k in keys if k not in tensors]
            if missing:
                raise CheckpointError(
                    f"{shard} lacks tensor(s) its index assigns to it: {', '.join(missing[:8])}"
                )
            state.update({k: tensors[k] for k in keys})
    return state


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in `folder`, keys as stored in the files."""
    if (folder / SAFE_INDEX).is_file():
        return _read_sharded(folder / SAFE_INDEX, safetensors=True)
    if (folder / SAFE_WEIGHTS).is_file():
        return _read_safetensors(folder / SAFE_WEIGHTS)
    if (folder / BIN_INDEX).is_file():
        return _read_sharded(folder / BIN_INDEX, safetensors=False)
    if (folder / BIN_WEIGHTS).is_file():
        return _read_bin(folder / BIN_WEIGHTS)
    raise CheckpointError(
        f"no weights in {folder}: expected {SAFE_WEIGHTS}, {SAFE_INDEX}, {BIN_WEIGHTS} or {BIN_INDEX}"
    )


def _file_shapes(path: Path) -> dict[str, torch.Tensor]:
    """Meta tensors with the shapes and dtypes stored in one weights file (no data read)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        out = {}
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118
                sl = f.get_slice(key)
                dtype = _ST_DTYPE.get(sl.get_dtype(), torch.float32)
                out[key] = torch.empty(list(sl.get_shape()), dtype=dtype, device="meta")
        return out
    state = torch.load(str(path), map_location="meta", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


_ST_DTYPE = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def verify_checkpoint(folder: str | os.PathLike, config: GPT2Config | None = None) -> list[str]:
    """What is wrong with the checkpoint in `folder`, one sentence per problem (empty: it
    loads). Reads file headers only: missing or unreadable shards, keys the index names but
    no shard holds, duplicate keys, missing backbone weights, shapes that disagree with the
    config, integer tensors where weights are floats. `gpt2kit info` prints these."""
    folder = Path(folder)
    damage: list[str] = []
    if config is None:
        try:
            config = GPT2Config.from_json_file(folder / CONFIG)
        except (OSError, ValueError) as err:
            return [f"{CONFIG}: {err}"]
    stored: dict[str, torch.Tensor] = {}
    index = next((folder / n for n in (SAFE_INDEX, BIN_INDEX) if (folder / n).is_file()), None)
    if index is not None:
        try:
            shards = read_index(index)
        except CheckpointError as err:
            return [str(err)]
        owner = {key: shard for shard, keys in shards.items() for key in keys}
        for shard, keys in shards.items():
            try:
                held = _file_shapes(shard)
            except Exception as err:  # noqa: BLE001 - every unreadable file is one finding
                damage.append(f"{shard.name} cannot be read ({str(err).splitlines()[0][:160]})")
                continue
            lost = [k for k in keys if k not in held]
            if lost:
                damage.append(
                    f"{shard.name} lacks {len(lost)} tensor(s) {index.name} assigns to it: "
                    f"{', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}"
                )
            twice = [k for k in held if k in owner and owner[k] != shard]
            if twice:
                damage.append(
                    f"{shard.name} also holds {', '.join(twice[:5])}, assigned to another shard"
                )
            stored.update({k: v for k, v in held.items() if k in keys})
    else:
        files = [folder / n for n in (SAFE_WEIGHTS, BIN_WEIGHTS) if (folder / n).is_file()]
        if not files:
            return [
                f"no weights: expected {SAFE_WEIGHTS}, {SAFE_INDEX}, {BIN_WEIGHTS} or {BIN_INDEX}"
            ]
        try:
            stored = _file_shapes(files[0])
        except Exception as err:  # noqa: BLE001
            return [f"{files[0].name} cannot be read ({str(err).splitlines()[0][:160]})"]
    if damage:
        return damage
    from .models.auto import architecture_class

    try:
        cls = architecture_class(config)
        with torch.device("meta"):
            model = cls(config)
    except Exception as err:  # noqa: BLE001
        return [f"{CONFIG} does not describe a model gpt2kit can build ({err})"]
    prefix = f"{cls.base_model_prefix}." if cls.base_model_prefix else ""
    state = from_hf_state_dict(stored, prefix)
    expected = model.state_dict()
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = [
        k
        for k in expected
        if k not in state and k not in tied and k.startswith(prefix) and not _CROSS_KEY.search(k)
    ]
    if missing:
        damage.append(
            f"missing {len(missing)} backbone weight(s): {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}"
        )
    for key, tensor in state.items():
        if key in expected and tensor.shape != expected[key].shape:
            damage.append(
                f"{key}: stored {tuple(tensor.shape)}, config.json implies "
                f"{tuple(expected[key].shape)}"
            )
        elif (
            key in expected and expected[key].is_floating_point() and not tensor.is_floating_point()
        ):
            damage.append(f"{key}: stored as {tensor.dtype}, the model holds floats")
    return damage


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
    rename = getattr(cls, "rename_checkpoint_keys", None)
    if rename is not None:  # a model with its own key layout (the encoder-decoder)
        raw = rename(raw, config)
    dtype = _resolve_dtype(dtype, raw)
    state = from_hf_state_dict(raw, prefix)
    device = torch.device(device) if device is not None else torch.device("cpu")

    # Build on the meta device (no random init of weights about to be overwritten), then
    # allocate for real and copy.
    from .config_checks import check_allocation

    check_allocation(config, dtype, device)  # before anything is allocated
    with torch.device("meta"):
        model = cls(config)
    model.to_empty(device=device)
    model.to(dtype)
    model.tie_weights()

    expected = model.state_dict()
    check_tensor_values(state, expected, folder)
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
    tied = (  # (`decoder.lm_head.weight` in an encoder-decoder)
        {k for k in expected if k == "lm_head.weight" or k.endswith(".lm_head.weight")}
        if config.tie_word_embeddings
        else set()
    )
    reinit = {m.split(":")[0] for m in report.mismatched_keys}
    missing = [k for k in expected if k not in state and k not in tied and k not in reinit]
    missing_backbone = [k for k in missing if k.startswith(prefix)] if prefix else missing
    # Cross-attention added on top of a plain checkpoint (encoder-decoder) is a new head part.
    missing_backbone = [k for k in missing_backbone if not _CROSS_KEY.search(k)]
    if missing_backbone:
        pair = any(k.startswith("decoder.transformer.") for k in report.dropped_keys)
        raise CheckpointError(
            f"{folder} lacks backbone weights: {', '.join(missing_backbone[:8])}"
            f"{' ...' if len(missing_backbone) > 8 else ''}; "
            + (
                "it is an encoder-decoder (EncoderDecoderModel) folder: load it with "
                "GPT2ForConditionalGeneration (AutoModelForSeq2SeqLM)"
                if pair
                else "the file is incomplete or not a GPT-2 checkpoint of this size"
            )
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


def check_tensor_values(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], folder: Any
) -> None:
    """Refuse integer (or bool, complex) tensors where the model holds floats, naming the
    tensor (a copy would silently turn them into whole-number weights); warn, naming each
    tensor, about NaN or infinite weights (they load, so a damaged file can be inspected,
    but every output would be NaN)."""
    nonfinite = []
    for key, tensor in state.items():
        target = expected.get(key)
        if target is None or not target.is_floating_point():
            continue
        if not tensor.is_floating_point():
            raise CheckpointError(
                f"{folder}: tensor {key!r} has dtype {tensor.dtype} where the model holds "
                f"{target.dtype} weights; the file is damaged or not a GPT-2 checkpoint"
            )
        if not bool(torch.isfinite(tensor).all()):
            nonfinite.append(key)
    if nonfinite:
        logger.warning(
            "%s: weights with NaN or infinite values: %s%s; outputs will be NaN",
            folder,
            ", ".join(nonfinite[:8]),
            " ..." if len(nonfinite) > 8 else "",
        )


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


# Scratch folders beside a target: `.<name>.tmp-<pid>.<host>-<random>` (being written) and
# `.<name>.old-<pid>.<host>` (the previous version, during the swap). `<host>` is a hash of
# the host name: on a shared file system only the host that wrote one can tell whether
# its process is gone.
_SCRATCH = re.compile(
    r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)\.(?P<host>[0-9a-f]{8})(?:-.*)?$"
)
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _owner() -> str:
    return f"{os.getpid()}.{_HOST}"


def _alive(pid: int, host: str = _HOST) -> bool:
    if host != _HOST:
        return True  # another machine's save: never ours to judge
    if pid == os.getpid():
        return True  # ours: another thread's save may be under way
    if os.name == "nt":
        return True  # os.kill(pid, 0) would send CTRL_C there: never judge, never delete
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems cannot fsync a directory
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root`, then `root`: the data is on disk before a
    rename makes it the checkpoint (a power cut after the rename cannot leave empty files)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


def _scratch_of(target: Path) -> list[tuple[str, int, str, Path]]:
    """`(kind, pid, host, path)` of the scratch folders saves of `target` left beside it."""
    parent = target.parent
    if not parent.is_dir():
        return []
    found = []
    for item in parent.iterdir():
        m = _SCRATCH.match(item.name)
        if m and m["name"] == target.name:
            found.append((m["kind"], int(m["pid"]), m["host"], item))
    return found


def recover_folder(target: str | os.PathLike) -> bool:
    """Finish or undo a save of `target` that was killed, before the folder is read or saved.

    A save writes `.<name>.tmp-<pid>.<host>-*`, then renames `target` to `.<name>.old-<pid>.<host>` and the
    scratch folder to `target`. Killed between the two renames, `target` is missing and the
    pair is there: the scratch folder is complete (the first rename happens only after it
    is written and fsynced), so it becomes `target`. Scratch folders of dead processes are
    removed. Returns whether `target` was restored.
    """
    target = Path(target)
    restored = False
    scratch = [(k, pid, p) for k, pid, host, p in _scratch_of(target) if not _alive(pid, host)]
    if not target.exists():
        olds = {pid: p for k, pid, p in scratch if k == "old"}
        for kind, pid, path in scratch:
            if kind == "tmp" and pid in olds and not target.exists():
                os.replace(path, target)
                restored = True
                logger.warning("%s: finished a save killed mid-swap (from %s)", target, path.name)
        if not target.exists() and olds:
            pid, path = max(olds.items())
            os.replace(path, target)  # no complete new version: the old one comes back
            restored = True
            logger.warning("%s: restored the previous version after a killed save", target)
        if restored:
            _fsync_path(target.parent)
    for _kind, _pid, path in scratch:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
    return restored


def _no_space(err: BaseException, target: Path) -> OSError | None:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return OSError(
            errno.ENOSPC,
            f"no space left on device while saving {target} (folder {target.parent}); free "
            "space there or save elsewhere. The previous version, if any, is untouched",
        )
    return None


class _AtomicFolder:
    """Build a folder beside `target`, then swap it in with renames.

    Files already in `target` that this save does not write (a training log, a README) are
    carried over; old weight files are not, so a smaller re-save leaves no stale shards.
    Every file and folder is fsynced before the swap, the parent folder after it. An
    exception (or a kill) before the swap leaves `target` as it was; a kill between the two
    renames is finished by the next load or save (`recover_folder`), which also removes
    the scratch folders of killed saves. A full disk is an `OSError(ENOSPC)` naming the folder.
    """

    def __init__(self, target: Path):
        self.target = Path(target)

    def __enter__(self) -> Path:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            recover_folder(self.target)
            self.tmp = Path(
                tempfile.mkdtemp(
                    prefix=f".{self.target.name}.tmp-{_owner()}-", dir=self.target.parent
                )
            )
        except OSError as err:
            raise (_no_space(err, self.target) or err) from err
        # mkdtemp makes the folder private (0700); a saved checkpoint gets the permissions
        # of an ordinary `mkdir` (0777 minus the umask) so others can read it.
        umask = os.umask(0)
        os.umask(umask)
        self.tmp.chmod(0o777 & ~umask)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            full = _no_space(exc, self.target)
            if full is not None:
                raise full from exc
            return
        try:
            self._swap()
        except OSError as err:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise (_no_space(err, self.target) or err) from err

    def _swap(self) -> None:
        if self.target.exists():
            if not self.target.is_dir():
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise CheckpointError(f"{self.target} exists and is not a folder")
            for item in self.target.iterdir():
                if not (self.tmp / item.name).exists() and not _WEIGHT_FILE.match(item.name):
                    dest = self.tmp / item.name
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest)
            _fsync_tree(self.tmp)
            old = self.target.with_name(f".{self.target.name}.old-{_owner()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            _fsync_path(self.target.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            _fsync_tree(self.tmp)
            os.replace(self.tmp, self.target)
            _fsync_path(self.target.parent)


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
