"""Checkpoints that resume exactly: weights, optimizer, scheduler, counters, RNG, data position.

A checkpoint is a folder `checkpoint-<step>/` holding

- the model as `save_pretrained` writes it (loads in `transformers` as is),
- `optimizer.pt`, `scheduler.pt`, `scaler.pt` (fp16 only), `rng_state.pt`: `torch.save`d
  plain tensors and numbers, read back with `torch.load(weights_only=True)`,
- `trainer_state.json`: step, epoch, micro-batches consumed in the epoch, best metric, ...
- `training_args.json`: the arguments of the run (for the record).

The folder is written through `gpt2kit.checkpoint.atomic_folder`: a crash or kill mid-save
leaves the previous checkpoint untouched and no half-written `checkpoint-<step>/`.

Under FSDP the Trainer first gathers full state dicts on rank 0 (`distributed.gather_full_state`)
and passes them in: the folder is then the same as a single process writes (full weights in
the `save_pretrained` layout), except that `optimizer.pt` is keyed by parameter name instead
of position. `load_checkpoint` reads either layout into a plain, DDP or FSDP model, so a run
can resume under a different number of processes or with FSDP switched on or off.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..checkpoint import (
    CheckpointError,
    atomic_folder,
    from_hf_state_dict,
    read_state_dict,
    recover_folder,
)
from .distributed import is_fsdp, load_full_state, plain_class

logger = logging.getLogger("gpt2kit")

STATE_FILE = "trainer_state.json"
PLAIN_WEIGHTS = "module_state.safetensors"  # modules without save_pretrained
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_KILLED_SWAP_RE = re.compile(r"^\.(checkpoint-\d+)\.old-")


class DamagedCheckpointError(ValueError):
    """A file of a training checkpoint cannot be read (cut short, corrupted); names the file."""


@dataclass
class TrainerState:
    """Counters a resumed run needs to continue where the first one stopped.

    `batches_in_epoch` counts micro-batches of the current epoch already consumed (always a
    multiple of the accumulation steps at a checkpoint), so a resumed run skips exactly those.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    tokens_seen: int = 0
    best_metric: float | None = None
    best_checkpoint: str | None = None
    evals_without_improvement: int = 0
    skipped_steps: int = 0
    max_steps: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object of trainer counters")
        names = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown fields {', '.join(unknown)}")
        return cls(**data)


@dataclass
class RNGState:
    """Python, NumPy and torch (CPU + every CUDA device) generator states as tensors."""

    states: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> RNGState:
        version, internal, gauss = random.getstate()
        _, keys, pos, has_gauss, cached = np.random.get_state()
        states: dict[str, Any] = {
            "python_version": version,
            "python_state": torch.tensor(internal, dtype=torch.int64),
            "python_gauss": gauss,
            "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": int(pos),
            "numpy_has_gauss": int(has_gauss),
            "numpy_cached": float(cached),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return cls(states)

    def restore(self) -> None:
        s = self.states
        random.setstate((s["python_version"], tuple(s["python_state"].tolist()), s["python_gauss"]))
        keys = s["numpy_keys"].numpy().astype(np.uint32)
        np.random.set_state(
            ("MT19937", keys, s["numpy_pos"], s["numpy_has_gauss"], s["numpy_cached"])
        )
        torch.set_rng_state(s["torch"])
        if "cuda" in s and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["cuda"])


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """`checkpoint-<step>` folders in `output_dir`, oldest (lowest step) first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    for p in list(root.iterdir()):  # a save killed mid-swap left `.checkpoint-N.old-*`
        m = _KILLED_SWAP_RE.match(p.name)
        if m and not (root / m.group(1)).exists():
            recover_folder(root / m.group(1))
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in `output_dir`, or None."""
    dirs = [d for d in checkpoint_dirs(output_dir) if (d / STATE_FILE).is_file()]
    return dirs[-1] if dirs else None


def _unsharded_twin(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A plain instance of `model`'s class holding `weights` (no copy: built on the meta
    device, then the tensors are assigned), so `save_pretrained` writes a sharded model's
    gathered weights with the usual file layout, config and `architectures` name.
    """
    with torch.device("meta"):
        twin = plain_class(model)(model.config)  # type: ignore[call-arg]
    twin.load_state_dict(weights, strict=True, assign=True)
    if hasattr(twin, "tie_weights"):
        twin.tie_weights()
    if getattr(model, "generation_config", None) is not None:
        twin.generation_config = model.generation_config
    return twin


def write_model(
    model: torch.nn.Module,
    folder: Path,
    tokenizer: Any = None,
    weights: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the model into `folder`: `save_pretrained` for gpt2kit models, else a safetensors
    state dict. `weights` (a full state dict gathered from an FSDP model) replaces the
    model's own `state_dict()`.
    """
    if hasattr(model, "save_pretrained"):
        target = model if weights is None else _unsharded_twin(model, weights)
        target.save_pretrained(folder, tokenizer=tokenizer)  # type: ignore[operator]
        return
    state = model.state_dict() if weights is None else weights
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, folder / PLAIN_WEIGHTS)


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainerState,
    scaler: Any = None,
    args_dict: dict[str, Any] | None = None,
    tokenizer: Any = None,
    full_state: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> Path:
    """Write everything a resume needs into `folder`, atomically.

    `full_state` is `(model_state, optimizer_state)` from `distributed.gather_full_state`
    (FSDP): written instead of the (sharded) model's and optimizer's own state dicts.
    """
    with atomic_folder(folder) as tmp:
        write_model(model, tmp, tokenizer, weights=full_state[0] if full_state else None)
        optim_state = full_state[1] if full_state else optimizer.state_dict()
        torch.save(optim_state, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        if scaler is not None and scaler.is_enabled():
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        torch.save(RNGState.capture().states, tmp / "rng_state.pt")
        if args_dict is not None:
            (tmp / "training_args.json").write_text(
                json.dumps(args_dict, indent=2, sort_keys=True, default=str)
            )
        # the state file goes last: its presence marks a complete checkpoint
        (tmp / STATE_FILE).write_text(state.to_json())
    return folder


def _load(path: Path) -> Any:
    """A `torch.save`d file of plain tensors and numbers; a damaged one names itself."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise DamagedCheckpointError(f"{path} is missing; the checkpoint is incomplete") from err
    except Exception as err:
        raise DamagedCheckpointError(
            f"{path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "the file is cut short or corrupted. Resume from an earlier checkpoint "
            "(--resume takes the newest good one)"
        ) from err


def _read_state(folder: Path) -> TrainerState:
    path = folder / STATE_FILE
    try:
        return TrainerState.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise DamagedCheckpointError(
            f"{path} is not a valid trainer state ({err}); the file is cut short or corrupted. "
            "Resume from an earlier checkpoint (--resume takes the newest good one)"
        ) from err


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """Copy a checkpoint's weights into `model` in place (keeps the optimizer's references).

    An FSDP-sharded model takes them through `set_model_state_dict` (every rank reads the
    folder and keeps its shard), so call it on every rank together.
    """
    if getattr(model, "has_adapters", False):  # an adapter checkpoint: only its tensors
        from ..adapters import load_adapter_checkpoint

        load_adapter_checkpoint(model, Path(folder))
        return
    if (Path(folder) / PLAIN_WEIGHTS).is_file():
        try:
            plain = load_file(str(Path(folder) / PLAIN_WEIGHTS))
        except Exception as err:
            raise CheckpointError(
                f"{Path(folder) / PLAIN_WEIGHTS} is not a readable safetensors file ({err}); "
                "it is cut short or corrupted"
            ) from err
        if is_fsdp(model):
            load_full_state(model, plain)
        else:
            model.load_state_dict(plain)
        return
    prefix = f"{model.base_model_prefix}." if getattr(model, "base_model_prefix", "") else ""
    state = from_hf_state_dict(read_state_dict(Path(folder)), prefix)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("lm_head.weight")]
    if missing:
        raise ValueError(
            f"{folder} lacks weights for {', '.join(missing[:5])}: is it a checkpoint of this model?"
        )
    if is_fsdp(model):
        full = {k: state[k] for k in own if k in state}
        embedding = state.get(f"{prefix}wte.weight")
        for key in own:  # a tied head is not in the file: it is the embedding
            if key not in full and key.endswith("lm_head.weight") and embedding is not None:
                full[key] = embedding
        load_full_state(model, full)
        return
    with torch.no_grad():
        for key, tensor in state.items():
            if key in own:
                own[key].copy_(tensor)
    if hasattr(model, "tie_weights"):
        model.tie_weights()


def load_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any = None,
) -> TrainerState:
    """Restore `model`, `optimizer`, `scheduler`, `scaler` and the RNGs from `folder`.

    Every file is read before anything is restored, so a damaged checkpoint
    (`DamagedCheckpointError`, naming the file) leaves the model and optimizer untouched and
    an earlier checkpoint can be loaded instead (`load_latest_checkpoint`).
    """
    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} is not a training checkpoint (no {STATE_FILE}); pass a checkpoint-<step> "
            "folder written by Trainer, or resume_from_checkpoint=True to take the newest one"
        )
    state = _read_state(folder)
    optim_state = _load(folder / "optimizer.pt")
    scheduler_state = _load(folder / "scheduler.pt")
    scaler_state = (
        _load(folder / "scaler.pt")
        if scaler is not None and (folder / "scaler.pt").is_file()
        else None
    )
    rng_states = _load(folder / "rng_state.pt")
    try:
        load_weights(model, folder)  # reads every weight before copying any
    except CheckpointError as err:
        raise DamagedCheckpointError(str(err)) from err
    if is_fsdp(model) or _keyed_by_name(optim_state):
        load_full_state(model, None, optimizer, _by_name(optim_state, model, optimizer))
    else:
        optimizer.load_state_dict(optim_state)
    scheduler.load_state_dict(scheduler_state)
    if scaler_state is not None:
        scaler.load_state_dict(scaler_state)
    RNGState(rng_states).restore()
    return state


def load_latest_checkpoint(
    output_dir: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any = None,
) -> tuple[Path, TrainerState] | None:
    """Resume from the newest checkpoint in `output_dir` that reads; a damaged newer one is
    skipped with a warning naming it and the file, so a run killed while the disk was
    failing still resumes. None when there is no checkpoint; the last error when none reads.
    """
    dirs = [d for d in checkpoint_dirs(output_dir) if (d / STATE_FILE).is_file()]
    damaged: list[str] = []
    for folder in reversed(dirs):
        try:
            state = load_checkpoint(folder, model, optimizer, scheduler, scaler)
        except DamagedCheckpointError as err:
            if folder == dirs[0]:
                raise
            damaged.append(folder.name)
            logger.warning("%s is damaged: %s; trying the previous checkpoint", folder.name, err)
            continue
        if damaged:
            logger.warning(
                "resuming from %s instead of the newest checkpoint %s, which is damaged",
                folder.name,
                damaged[0],
            )
        return folder, state
    return None


def _keyed_by_name(optim_state: dict[str, Any]) -> bool:
    """Whether an optimizer state dict names parameters (FSDP checkpoints) or numbers them."""
    groups = optim_state.get("param_groups", [])
    return any(isinstance(p, str) for g in groups for p in g.get("params", []))


def _by_name(
    optim_state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """A positional optimizer state dict (`optimizer.state_dict()`) re-keyed by parameter
    name, so a checkpoint from a plain or DDP run resumes under FSDP. Position `i` is the
    `i`-th parameter over the optimizer's groups, the same order in both runs since both
    build the optimizer from `named_parameters`.
    """
    if _keyed_by_name(optim_state):
        return optim_state
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    saved = [i for g in optim_state["param_groups"] for i in g["params"]]
    if len(saved) != len(order):
        raise ValueError(
            f"the checkpoint's optimizer holds {len(saved)} parameters, this model {len(order)}: "
            "is it a checkpoint of this model?"
        )
    rename = dict(zip(saved, order, strict=True))
    return {
        "state": {rename[i]: v for i, v in optim_state["state"].items()},
        "param_groups": [
            {**g, "params": [rename[i] for i in g["params"]]} for g in optim_state["param_groups"]
        ],
    }


def rotate_checkpoints(
    output_dir: str | Path, limit: int | None, keep: str | Path | None = None
) -> list[Path]:
    """Delete the oldest checkpoints beyond `limit`, never `keep` (the best). Returns the deleted."""
    if limit is None:
        return []
    dirs = checkpoint_dirs(output_dir)
    keep_path = Path(keep).resolve() if keep else None
    removable = [d for d in dirs if d.resolve() != keep_path]
    excess = len(dirs) - limit
    deleted = []
    for d in removable[: max(0, excess)]:
        shutil.rmtree(d, ignore_errors=True)
        deleted.append(d)
    return deleted
