"""Checkpoints that resume exactly: weights, optimizer, scheduler, counters, RNG, data position.

A checkpoint is a folder `checkpoint-<step>/` holding

- the model as `save_pretrained` writes it (loads in `transformers` as is),
- `optimizer.pt`, `scheduler.pt`, `scaler.pt` (fp16 only), `rng_state.pt`: `torch.save`d
  plain tensors and numbers, read back with `torch.load(weights_only=True)`,
- `trainer_state.json`: step, epoch, micro-batches consumed in the epoch, best metric, ...
- `training_args.json`: the arguments of the run (for the record).

The folder is written through `gpt2kit.checkpoint.atomic_folder`: a crash or kill mid-save
leaves the previous checkpoint untouched and no half-written `checkpoint-<step>/`.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..checkpoint import atomic_folder, from_hf_state_dict, read_state_dict

STATE_FILE = "trainer_state.json"
PLAIN_WEIGHTS = "module_state.safetensors"  # modules without save_pretrained
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


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
        return cls(**json.loads(text))


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


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainerState,
    scaler: Any = None,
    args_dict: dict[str, Any] | None = None,
    tokenizer: Any = None,
) -> Path:
    """Write everything a resume needs into `folder`, atomically."""
    with atomic_folder(folder) as tmp:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp, tokenizer=tokenizer)  # type: ignore[operator]
        else:  # any other module: its state dict as is
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                tmp / PLAIN_WEIGHTS,
            )
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
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
    return torch.load(path, map_location="cpu", weights_only=True)


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """Copy a checkpoint's weights into `model` in place (keeps the optimizer's references)."""
    if (Path(folder) / PLAIN_WEIGHTS).is_file():
        model.load_state_dict(load_file(str(Path(folder) / PLAIN_WEIGHTS)))
        return
    prefix = f"{model.base_model_prefix}." if getattr(model, "base_model_prefix", "") else ""
    state = from_hf_state_dict(read_state_dict(Path(folder)), prefix)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("lm_head.weight")]
    if missing:
        raise ValueError(
            f"{folder} lacks weights for {', '.join(missing[:5])}: is it a checkpoint of this model?"
        )
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
    """Restore `model`, `optimizer`, `scheduler`, `scaler` and the RNGs from `folder`."""
    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} is not a training checkpoint (no {STATE_FILE}); pass a checkpoint-<step> "
            "folder written by Trainer, or resume_from_checkpoint=True to take the newest one"
        )
    load_weights(model, folder)
    optimizer.load_state_dict(_load(folder / "optimizer.pt"))
    scheduler.load_state_dict(_load(folder / "scheduler.pt"))
    if scaler is not None and (folder / "scaler.pt").is_file():
        scaler.load_state_dict(_load(folder / "scaler.pt"))
    RNGState(_load(folder / "rng_state.pt")).restore()
    return TrainerState.from_json((folder / STATE_FILE).read_text())


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
