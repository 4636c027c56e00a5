"""Putting adapters into a model, taking them out, and their files.

Every function takes the model (any `nn.Module` whose projections are `nn.Linear`) and
works on its module tree: `add` wraps the targeted projections in `LoraLinear` and the
`modules_to_save` in `ModulesToSave`; `delete` of the last adapter puts the original
modules back, so a model without adapters is exactly the plain model again (same module
types, `state_dict()` keys and decoding fast paths).

Files: an adapter folder is `adapter_config.json` + `adapter_model.safetensors`, keys
`base_model.model.<module path>.lora_A.weight` (`peft`'s names; our module paths are
`transformers`' because our modules are named after its checkpoint keys). The only layout
difference is the one `gpt2kit.checkpoint` handles everywhere: a full module saved through
`modules_to_save` whose weight `transformers` stores as `Conv1D` is transposed. A bare
`GPT2Model`'s keys (`h.0...`) and a task model's (`transformer.h.0...`) load into either.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import _BACKBONE_KEY, _CONV1D, atomic_folder
from ..hub import HubError, HubOptions, resolve_folder
from .config import ADAPTER_CONFIG, TASK_HEADS, AdapterConfigError, LoraConfig
from .layers import QUANTIZED_MERGE, LoraLinear, ModulesToSave, is_quantized_linear

logger = logging.getLogger("gpt2kit")

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_BIN = "adapter_model.bin"
PEFT_PREFIX = "base_model.model."
_NAMED_LORA_KEY = re.compile(r"\.(lora_[AB])\.(?!weight$)[^.]+\.weight$")  # `lora_A.<name>.weight`


class AdapterError(ValueError):
    """An adapter does not fit the model or its file is wrong; the message says how."""


# -- state kept on the model ----------------------------------------------------------------
def configs(model: nn.Module) -> dict[str, LoraConfig]:
    """The model's adapters by name (`transformers`' `model.peft_config`)."""
    return model.__dict__.setdefault("_gpt2kit_adapters", {})


def active(model: nn.Module) -> list[str]:
    return model.__dict__.setdefault("_gpt2kit_active_adapters", [])


def _require(model: nn.Module) -> dict[str, LoraConfig]:
    found = configs(model)
    if not found:
        raise AdapterError(
            "the model has no adapter; add one with model.add_adapter(LoraConfig(...)) or "
            "model.load_adapter(folder)"
        )
    return found


def _names(model: nn.Module, names: str | list[str] | None, default: list[str]) -> list[str]:
    found = _require(model)
    chosen = default if names is None else [names] if isinstance(names, str) else list(names)
    unknown = [n for n in chosen if n not in found]
    if unknown:
        raise AdapterError(
            f"no adapter named {', '.join(map(repr, unknown))}; the model has {', '.join(map(repr, found))}"
        )
    return chosen


def wrappers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (LoraLinear, ModulesToSave))]


# -- targets ------------------------------------------------------------------------------------
def _output_name(model: nn.Module) -> str | None:
    head = getattr(model, "lm_head", None)
    return "lm_head" if isinstance(head, nn.Module) else None


def _matches_modules_to_save(config: LoraConfig, key: str) -> bool:
    return any(
        re.match(rf"(^|.*\.){re.escape(m)}($|\..*)", key) for m in config.modules_to_save or []
    )


def _is_target(config: LoraConfig, key: str) -> bool:
    """`peft`'s `check_target_module_exists` on the module path `key`."""
    exclude = config.exclude_modules
    if exclude:
        if isinstance(exclude, str):
            if re.fullmatch(exclude, key):
                return False
        elif key in exclude or any(key.endswith(f".{e}") for e in exclude):
            return False
    if _matches_modules_to_save(config, key):
        return False
    targets = config.target_modules
    if isinstance(targets, str):
        return re.fullmatch(targets, key) is not None
    if key in targets:
        return True
    found = any(key.endswith(f".{t}") for t in targets)
    layers = config.layers_to_transform
    if found and layers is not None and (not isinstance(layers, list) or layers):
        pattern = config.layers_pattern
        match = None
        if not pattern:
            match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
        else:
            for p in [pattern] if isinstance(pattern, str) else pattern:
                match = re.match(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", key)
                if match is not None:
                    break
        if match is None:
            return False
        index = int(match["idx"])
        return index == layers if isinstance(layers, int) else index in layers
    return found


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules an adapter may name: everything outside the adapters' own submodules."""
    out, inside = [], []
    for name, module in model.named_modules():
        if any(name.startswith(p) for p in inside):
            continue
        out.append((name, module))
        if isinstance(module, (LoraLinear, ModulesToSave)):
            inside.append(f"{name}.")
    return out


def find_targets(model: nn.Module, config: LoraConfig) -> list[str]:
    """Paths of the projections `config` puts LoRA on; errors for a target gpt2kit cannot
    wrap (an embedding, the tied LM head, a non-linear module) or none found."""
    all_linear = (
        isinstance(config.target_modules, str) and config.target_modules.lower() == "all-linear"
    )
    output = _output_name(model)
    found = []
    for name, module in _candidates(model):
        if not name:
            continue
        linear = isinstance(module, (nn.Linear, LoraLinear)) or is_quantized_linear(module)
        if all_linear:
            hit = linear and name != output and not _matches_modules_to_save(config, name)
        else:
            hit = _is_target(config, name)
        if not hit:
            continue
        if name == output:
            raise AdapterConfigError(
                f"target_modules selects {name!r}, the LM head, which gpt2kit does not put LoRA on "
                "(it shares its weight with the token embedding and the chunked LM loss reads "
                "that weight directly); target the blocks' projections (c_attn, c_proj, c_fc)"
            )
        if not linear:
            raise AdapterConfigError(
                f"target_modules selects {name!r}, a {type(module).__name__}; gpt2kit puts LoRA on "
                "linear projections only (c_attn, c_proj, c_fc, q_attn, heads' nn.Linear, and "
                "their weight-only quantized QuantizedLinear). "
                "Name those, or anchor a regex so it matches only them"
            )
        found.append(name)
    if not found:
        raise AdapterConfigError(
            f"target_modules={config.target_modules!r} matches no projection of "
            f"{type(model).__name__}; GPT-2's are c_attn, c_proj (attn and mlp), c_fc"
        )
    return found


def _find_modules_to_save(model: nn.Module, config: LoraConfig) -> list[str]:
    names = config.modules_to_save or []
    if not names:
        return []
    found: list[str] = []
    used = set()
    for name, module in _candidates(model):
        if not name or any(name.startswith(f"{f}.") for f in found):
            continue
        hit = next((n for n in names if name.endswith(n)), None)  # (`peft`: endswith)
        if hit is None or isinstance(module, LoraLinear):
            continue
        if name == _output_name(model):
            raise AdapterConfigError(
                f"modules_to_save names {name!r}, the LM head tied to the token embedding; gpt2kit "
                "does not train a separate copy of it. Remove it from modules_to_save"
            )
        found.append(name)
        used.add(hit)
    auto = set(TASK_HEADS.get(config.task_type or "", []))
    missing = [n for n in names if n not in used and n not in auto]
    if missing:
        raise AdapterConfigError(
            f"modules_to_save names {', '.join(map(repr, missing))}, which {type(model).__name__} "
            "does not have; its heads are e.g. score, classifier, qa_outputs"
        )
    return found


# -- adding and removing ------------------------------------------------------------------------
def _set_child(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_name, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def add(model: nn.Module, config: LoraConfig, name: str, trainable: bool = True) -> None:
    """Create adapter `name` from `config` in `model` (initialized as `peft` does)."""
    config = LoraConfig.coerce(config)
    if not isinstance(name, str) or not name or "." in name:
        raise AdapterError(f"adapter_name must be a non-empty string without dots, got {name!r}")
    if name in configs(model):
        raise AdapterError(
            f"an adapter named {name!r} already exists; pick another adapter_name or "
            "delete_adapter it first"
        )
    if name in ("base_layer", "original_module", "weight", "bias"):
        raise AdapterError(f"adapter_name {name!r} collides with a module name; pick another")
    targets = find_targets(model, config)
    heads = _find_modules_to_save(model, config)
    for path in targets:
        module = model.get_submodule(path)
        if not isinstance(module, LoraLinear):
            module = LoraLinear(module)
            _set_child(model, path, module)
        r = config.rank_for(path)
        module.add(
            name, r, config.alpha_for(path), config.scaling_for(path, r),
            float(config.lora_dropout), config.init_lora_weights,
        )  # fmt: skip
    for path in heads:
        module = model.get_submodule(path)
        if not isinstance(module, ModulesToSave):
            module = ModulesToSave(module)
            _set_child(model, path, module)
        module.add(name, trainable)
    for path in targets + heads:  # (new submodules take the model's train/eval mode)
        model.get_submodule(path).train(model.training)
    config.inference_mode = not trainable
    configs(model)[name] = config
    _note_names(model)
    _freeze_base(model)


def _note_names(model: nn.Module) -> None:
    names = frozenset(configs(model))
    for _, module in wrappers(model):
        if isinstance(module, LoraLinear):
            module.known_elsewhere = names


def _adapter_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """Parameters adapter `name` trains: its A and B, its head copies, and its biases."""
    config = configs(model)[name]
    params: list[nn.Parameter] = []
    for _, module in wrappers(model):
        if isinstance(module, LoraLinear) and name in module.lora_A:
            params += [module.lora_A[name].weight, module.lora_B[name].weight]
            if config.bias == "lora_only" and module.base_layer.bias is not None:
                params.append(module.base_layer.bias)
        elif isinstance(module, ModulesToSave) and name in module.modules_to_save:
            params += list(module.modules_to_save[name].parameters())
    if config.bias == "all":
        params += [p for key, p in _base_named_parameters(model) if key.endswith("bias")]
    return params


def _base_named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The base model's parameters (not the adapters', not the head copies')."""
    out = []
    for key, param in model.named_parameters():
        if ".lora_A." in key or ".lora_B." in key or ".modules_to_save." in key:
            continue
        out.append((key, param))
    return out


def _freeze_base(model: nn.Module) -> None:
    """Only the active, trainable adapters' parameters require grad (as `peft`)."""
    for _, param in _base_named_parameters(model):
        param.requires_grad_(False)
    for name in configs(model):
        for param in _adapter_parameters(model, name):
            param.requires_grad_(False)
    for name in active(model):
        if not configs(model)[name].inference_mode:
            for param in _adapter_parameters(model, name):
                param.requires_grad_(True)


def set_active(model: nn.Module, names: str | list[str]) -> None:
    chosen = _names(model, names, [])
    if not chosen:
        raise AdapterError("set_adapter needs at least one adapter name")
    active(model)[:] = chosen
    for _, module in wrappers(model):
        if isinstance(module, LoraLinear):
            keep = [n for n in module.merged_adapters if n in chosen]
            if keep != module.merged_adapters:
                module.unmerge([n for n in module.merged_adapters if n not in chosen])
        module.active_adapters[:] = [n for n in chosen if n in _adapter_names_of(module)]
    _freeze_base(model)


def _adapter_names_of(module: nn.Module) -> list[str]:
    if isinstance(module, LoraLinear):
        return list(module.lora_A.keys())
    return list(module.modules_to_save.keys())  # type: ignore[union-attr]


def set_disabled(model: nn.Module, disabled: bool) -> None:
    _require(model)
    for _, module in wrappers(model):
        if disabled and isinstance(module, LoraLinear):
            module.unmerge()
        module.disabled = disabled


def delete(model: nn.Module, names: str | list[str]) -> None:
    """Remove adapters; with the last one gone, the original modules are back in place."""
    chosen = _names(model, names, [])
    for name in chosen:
        for _, module in wrappers(model):
            module.remove(name)
        del configs(model)[name]
        if name in active(model):
            active(model).remove(name)
    _unwrap_empty(model)
    _note_names(model)
    if configs(model) and not active(model):
        set_active(model, next(iter(configs(model))))
    elif configs(model):
        _freeze_base(model)


def _unwrap_empty(model: nn.Module, force: bool = False) -> None:
    for path, module in wrappers(model):
        if isinstance(module, LoraLinear) and (force or not module.lora_A):
            if module.merged_adapters and not force:
                module.unmerge()
            _set_child(model, path, module.base_layer)
        elif isinstance(module, ModulesToSave) and (force or not module.modules_to_save):
            _set_child(model, path, module.original_module)


def merge(model: nn.Module, names: str | list[str] | None = None) -> None:
    """Add the adapters' `B A * scaling` into the base weights (default: the active ones)."""
    chosen = _names(model, names, list(active(model)))
    _refuse_quantized_merge(model, chosen, "merge_adapter")
    for _, module in wrappers(model):
        if isinstance(module, LoraLinear):
            module.merge([n for n in chosen if n in module.lora_A])


def _refuse_quantized_merge(model: nn.Module, names: list[str], what: str) -> None:
    """Before any weight changes: an adapter to merge that sits on a quantized base."""
    for path, module in wrappers(model):
        if (
            isinstance(module, LoraLinear)
            and module.quantized
            and any(n in module.lora_A for n in names)
        ):
            raise AdapterError(f"{what} ({path}): {QUANTIZED_MERGE}")


def unmerge(model: nn.Module) -> None:
    _require(model)
    for _, module in wrappers(model):
        if isinstance(module, LoraLinear):
            module.unmerge()


def merge_and_unload(model: nn.Module, names: str | list[str] | None = None) -> nn.Module:
    """Merge the adapters (default: the active ones) and remove every adapter: a plain
    model with the merged weights and the active adapter's head copies in place."""
    chosen = _names(model, names, list(active(model)))
    _refuse_quantized_merge(model, chosen, "merge_and_unload")
    merge(model, chosen)
    for path, module in wrappers(model):
        if isinstance(module, ModulesToSave):
            head = next(
                (module.modules_to_save[n] for n in chosen if n in module.modules_to_save), None
            )
            _set_child(model, path, head if head is not None else module.original_module)
        else:
            _set_child(model, path, module.base_layer)  # type: ignore[arg-type]
    configs(model).clear()
    active(model).clear()
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def unload(model: nn.Module) -> nn.Module:
    """Remove every adapter without merging: the base model as it was loaded."""
    _require(model)
    for _, module in wrappers(model):
        if isinstance(module, LoraLinear):
            module.unmerge()
    _unwrap_empty(model, force=True)
    configs(model).clear()
    active(model).clear()
    for param in model.parameters():
        param.requires_grad_(True)
    return model


# -- state dicts --------------------------------------------------------------------------------
def adapter_state_dict(model: nn.Module, name: str | None = None) -> dict[str, torch.Tensor]:
    """Adapter `name`'s tensors under `transformers`' keys without `peft`'s
    `base_model.model.` prefix (`transformer.h.0.attn.c_attn.lora_A.weight`, `score.weight`),
    in the files' layout; what `get_adapter_state_dict` returns in `transformers`."""
    name = _names(model, name, list(active(model))[:1] or list(configs(model))[:1])[0]
    config = configs(model)[name]
    out: dict[str, torch.Tensor] = {}
    for path, module in wrappers(model):
        if isinstance(module, LoraLinear) and name in module.lora_A:
            out[f"{path}.lora_A.weight"] = module.lora_A[name].weight
            out[f"{path}.lora_B.weight"] = module.lora_B[name].weight
            if config.bias == "lora_only" and module.base_layer.bias is not None:
                out[f"{path}.base_layer.bias"] = module.base_layer.bias
        elif isinstance(module, ModulesToSave) and name in module.modules_to_save:
            for key, tensor in module.modules_to_save[name].state_dict().items():
                full = f"{path}.{key}"
                out[full] = tensor.t() if _CONV1D.search(full) and tensor.dim() == 2 else tensor
    if config.bias == "all":
        for key, param in _base_named_parameters(model):
            if key.endswith("bias") and ".original_module." not in key:
                out.setdefault(key, param)
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def _normalize_key(key: str, prefix: str) -> str:
    key = key.removeprefix(PEFT_PREFIX)
    key = _NAMED_LORA_KEY.sub(r".\1.weight", key)
    if prefix and _BACKBONE_KEY.match(key):
        return prefix + key
    if not prefix and key.startswith("transformer."):
        return key[len("transformer.") :]
    return key


def load_state(
    model: nn.Module, name: str, state: dict[str, torch.Tensor], source: str = "the adapter file"
) -> None:
    """Copy an adapter file's tensors into adapter `name` (in place: optimizers keep
    their references). Unknown keys, missing LoRA weights and shape mismatches are
    errors naming `source`, the key and the shapes."""
    prefix = f"{model.base_model_prefix}." if getattr(model, "base_model_prefix", "") else ""
    modules = dict(wrappers(model))
    targets: dict[str, tuple[torch.Tensor, bool]] = {}  # file key -> (parameter, transpose)
    for path, module in modules.items():
        if isinstance(module, LoraLinear) and name in module.lora_A:
            targets[f"{path}.lora_A.weight"] = (module.lora_A[name].weight, False)
            targets[f"{path}.lora_B.weight"] = (module.lora_B[name].weight, False)
            if module.base_layer.bias is not None:
                targets[f"{path}.base_layer.bias"] = (module.base_layer.bias, False)
                targets[f"{path}.bias"] = (module.base_layer.bias, False)
        elif isinstance(module, ModulesToSave) and name in module.modules_to_save:
            for key, tensor in module.modules_to_save[name].state_dict(keep_vars=True).items():
                full = f"{path}.{key}"
                targets[full] = (tensor, bool(_CONV1D.search(full)) and tensor.dim() == 2)
    plain = dict(_base_named_parameters(model))
    required = {k for k in targets if ".lora_A." in k or ".lora_B." in k}
    unexpected, mismatched, seen = [], [], set()
    with torch.no_grad():
        for raw_key, tensor in state.items():
            key = _normalize_key(raw_key, prefix)
            target, transpose = targets.get(key, (None, False))
            if target is None and key.endswith("bias") and key in plain:
                target = plain[key]  # (bias="all": a bias outside the adapter's modules)
            if target is None:
                unexpected.append(raw_key)
                continue
            value = tensor.t() if transpose else tensor
            if tuple(value.shape) != tuple(target.shape):
                mismatched.append(
                    f"{raw_key}: file {tuple(value.shape)} vs model {tuple(target.shape)}"
                )
                continue
            target.copy_(value.to(target.dtype))
            seen.add(key)
    if unexpected:
        raise AdapterError(
            f"{source} holds tensors adapter {name!r} has no place for: "
            f"{', '.join(unexpected[:6])}{' ...' if len(unexpected) > 6 else ''}. Was it trained on "
            "another architecture, or are target_modules/modules_to_save in its "
            f"{ADAPTER_CONFIG} different from the file's keys?"
        )
    if mismatched:
        raise AdapterError(
            f"{source} does not fit the model: {'; '.join(mismatched[:4])}. Check r / rank_pattern "
            f"in {ADAPTER_CONFIG} and that the base model is the one the adapter was trained on"
        )
    missing = sorted(required - seen)
    if missing:
        raise AdapterError(
            f"{source} lacks LoRA weights for {', '.join(missing[:6])}"
            f"{' ...' if len(missing) > 6 else ''}: the file is incomplete or its "
            f"{ADAPTER_CONFIG} targets more modules than were trained"
        )


# -- folders ------------------------------------------------------------------------------------
def is_adapter_folder(path: str | os.PathLike) -> bool:
    folder = Path(path)
    return folder.is_dir() and (folder / ADAPTER_CONFIG).is_file()


def read_folder(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / ADAPTER_WEIGHTS).is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(folder / ADAPTER_WEIGHTS))
        except Exception as err:
            raise AdapterError(
                f"{folder / ADAPTER_WEIGHTS} is not a readable safetensors file ({err}); save the "
                "adapter again"
            ) from err
    if (folder / ADAPTER_BIN).is_file():
        state = torch.load(folder / ADAPTER_BIN, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise AdapterError(f"{folder / ADAPTER_BIN} does not hold a state dict of tensors")
        return state
    raise AdapterError(
        f"{folder} has no {ADAPTER_WEIGHTS} (or {ADAPTER_BIN}) beside {ADAPTER_CONFIG}"
    )


def resolve(path: str | os.PathLike, **hub: Any) -> Path:
    """A local adapter folder, or a Hub repository's adapter files (downloaded, cached)."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    name = str(path)
    what = (
        f"an adapter folder: {ADAPTER_CONFIG} + {ADAPTER_WEIGHTS}, as peft's or gpt2kit's "
        "save_pretrained writes on a model with an adapter"
    )
    if folder.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise AdapterError(f"adapter {name!r} {state}; pass {what}")
    options = HubOptions(**{k: v for k, v in hub.items() if v is not None})
    try:
        return resolve_folder(
            path,
            options,
            allow_patterns=[ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_BIN, "*.json", "*.txt"],
            need_weights=False,
        )
    except HubError as err:
        raise AdapterError(
            f"adapter {name!r} is no local folder and the Hub did not give it ({err}); pass {what}"
        ) from err


def load(
    model: nn.Module,
    path: str | os.PathLike,
    name: str,
    trainable: bool = False,
    config: LoraConfig | None = None,
    state: dict[str, torch.Tensor] | None = None,
    **hub: Any,
) -> LoraConfig:
    """Add adapter `name` from a folder `peft` or gpt2kit wrote (or from `config` +
    `state`); the first adapter becomes active, later ones are added inactive (as `peft`)."""
    folder = None
    if config is None or state is None:
        folder = resolve(path, **hub)
    config = LoraConfig.coerce(config) if config is not None else LoraConfig.from_pretrained(folder)
    state = state if state is not None else read_folder(folder)  # type: ignore[arg-type]
    first = not configs(model)
    add(model, config, name, trainable=trainable)
    try:
        load_state(
            model, name, state, str(folder / ADAPTER_WEIGHTS) if folder else "adapter_state_dict"
        )
    except Exception:
        delete(model, name)
        raise
    if first:
        set_active(model, name)
    else:
        _freeze_base(model)
    return config


def save(
    model: nn.Module,
    directory: str | os.PathLike,
    name: str | None = None,
    tokenizer: Any = None,
) -> Path:
    """Write adapter `name` (default: the active one) as `peft` does: `adapter_config.json`
    and `adapter_model.safetensors` with `base_model.model.` keys. Atomic, as full saves."""
    from safetensors.torch import save_file

    if name is None:
        current = list(active(model))
        if len(current) > 1:
            raise AdapterError(
                f"several adapters are active ({', '.join(current)}); save one at a time: "
                "set_adapter(name) then save_pretrained, or gpt2kit.adapters.save_adapter(model, dir, name)"
            )
        name = (current or list(_require(model)))[0]
    state = {PEFT_PREFIX + k: v for k, v in adapter_state_dict(model, name).items()}
    config = configs(model)[name]
    target = Path(directory)
    with atomic_folder(target) as tmp:
        save_file(state, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        saved = LoraConfig(**{**config.__dict__, "inference_mode": True})
        saved.save_pretrained(tmp)
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "save_pretrained"):
            # the head this adapter was trained with (labels, task options): no peft field
            # holds it, and `from_pretrained(folder)` rebuilds the model from it
            arch = getattr(model, "hf_architecture", None) or type(model).__name__
            model_config.copy(architectures=[arch]).save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return target


def load_checkpoint(model: nn.Module, folder: Path) -> None:
    """Copy a training checkpoint's adapter (the folder `save` wrote) into the model's
    active adapter in place, so the optimizer's references stay valid (a resume)."""
    if not (Path(folder) / ADAPTER_CONFIG).is_file():
        raise AdapterError(
            f"{folder} holds no adapter ({ADAPTER_CONFIG} missing) but the model has one: resume "
            "a LoRA run from its own checkpoints, with the same --lora settings"
        )
    name = (list(active(model)) or list(_require(model)))[0]
    load_state(model, name, read_folder(Path(folder)), str(Path(folder) / ADAPTER_WEIGHTS))
