"""Multi-process training under `torchrun`: process group, rank helpers, DDP/FSDP, seeded sharding.

Launch any script that builds a `Trainer` with
`torchrun --nproc_per_node N script.py`; the Trainer reads `RANK`/`WORLD_SIZE`/`LOCAL_RANK`
from the environment, joins the process group (NCCL on GPUs, gloo on CPU), wraps the model
in `DistributedDataParallel` (or shards it with FSDP2 `fully_shard` when `fsdp` is set), and
gives each rank its slice of every global batch. Only rank 0 writes checkpoints and logs.

FSDP here means PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`, not the legacy
`FullyShardedDataParallel` class): each transformer block is one shard group, the root
(embeddings, final LayerNorm, heads) another. It changes the model in place: parameters
become `DTensor` shards, so saving and loading go through the full-state-dict helpers below,
which every rank must call together.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..nn.backbone import GPT2Block

logger = logging.getLogger("gpt2kit")

FSDP_MODES = ("full_shard", "shard_grad_op")


def env_world_size() -> int:
    """Processes in the job as `torchrun` announces them (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed(device: torch.device, backend: str | None = None) -> bool:
    """Join the process group when launched with `WORLD_SIZE > 1`; returns whether distributed.

    Example:
        >>> init_distributed(torch.device("cpu"))  # a plain python process
        False
    """
    if is_initialized():
        return True
    if env_world_size() <= 1:
        return False
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return True


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of `value` over all ranks (a copy; `value` itself when not distributed)."""
    if not is_initialized():
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on any rank, so all ranks take the same branch."""
    if not is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a `DistributedDataParallel` (or `torch.compile`) wrapper.

    An FSDP2-sharded model is not a wrapper (`fully_shard` changes the module in place), so
    it comes back as is; `is_fsdp` tells it apart.
    """
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


# -- FSDP2 ----------------------------------------------------------------------------------------
def fsdp_mode(value: bool | str | None) -> str | None:
    """`TrainingArguments.fsdp` as a mode name: `None` (off), `full_shard` or `shard_grad_op`.

    Example:
        >>> fsdp_mode(True), fsdp_mode(False), fsdp_mode("shard_grad_op")
        ('full_shard', None, 'shard_grad_op')
    """
    if value is None or value is False or value == "":
        return None
    if value is True:
        return "full_shard"
    if isinstance(value, str) and value.strip().lower() in FSDP_MODES:
        return value.strip().lower()
    raise ValueError(
        f"fsdp={value!r}: pass True (= 'full_shard'), 'full_shard', 'shard_grad_op' or False"
    )


def is_fsdp(model: nn.Module) -> bool:
    """Whether `model` was sharded with FSDP2 `fully_shard`."""
    if not dist.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _tied_names(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names that share one tensor (e.g. `lm_head.weight` and `wte.weight`)."""
    by_id: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(param), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The submodules that become their own FSDP group: every `GPT2Block` whose parameters
    are used nowhere else.

    One group per block is what makes FSDP save memory: only one block's full weights exist
    at a time. A block sharing a parameter with the rest of the model would split a tied
    pair across two groups (each would shard and all-gather it separately), so such a block
    stays in the root group instead.
    """
    refs: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        refs[id(param)] = refs.get(id(param), 0) + 1
    units = []
    for module in model.modules():
        if not isinstance(module, GPT2Block):
            continue
        inside: dict[int, int] = {}
        for _, param in module.named_parameters(remove_duplicate=False):
            inside[id(param)] = inside.get(id(param), 0) + 1
        if all(refs[i] == n for i, n in inside.items()):
            units.append(module)
        else:
            logger.info("FSDP: %s shares weights outside itself; kept in the root group", module)
    return units


def apply_fsdp(
    model: nn.Module,
    mode: str = "full_shard",
    param_dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> nn.Module:
    """Shard `model` in place with FSDP2: each transformer block, then the root.

    Call it on every rank, after the process group exists and before building the optimizer
    (the optimizer must hold the sharded parameters). The model may still be on the CPU:
    each group is moved to `device` only as it is sharded, so the whole model never has to
    fit on one accelerator.

    Args:
        model: the model (any module; gpt2kit models are split per `GPT2Block`).
        mode: `full_shard` frees each block's gathered weights after its forward (least
            memory, one more all-gather in backward); `shard_grad_op` keeps them until the
            backward (ZeRO-2-like: faster, more memory).
        param_dtype: gather parameters and compute in this dtype (e.g. `torch.bfloat16`);
            gradients are still reduced in float32 and the sharded master weights stay float32.
        device: where the shards live; default: the current CUDA device when CUDA is
            available, else the CPU.

    Tied weights stay tied: `wte.weight` and `lm_head.weight` both sit in the root group, and
    FSDP2 registers one sharded parameter under both names. This is checked after sharding.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if is_fsdp(model):
        return model
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mesh = init_device_mesh(device.type, (get_world_size(),))
    tied = _tied_names(model)
    mp = MixedPrecisionPolicy(
        param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None
    )
    reshard = mode == "full_shard"
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    params = dict(model.named_parameters(remove_duplicate=False))
    for names in tied:
        if any(params[n] is not params[names[0]] for n in names[1:]):
            raise RuntimeError(f"FSDP untied {', '.join(names)}; they must share one tensor")
    return model


def no_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    """Accumulate gradients locally, skipping the cross-rank reduction (for micro-batches that
    are not the last of an optimizer step): DDP's `no_sync()`, FSDP2's
    `set_requires_gradient_sync(False)`, nothing for a plain module.
    """
    if is_fsdp(model):

        @contextlib.contextmanager
        def _fsdp_no_sync() -> Iterator[None]:
            model.set_requires_gradient_sync(False)  # type: ignore[operator]
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)  # type: ignore[operator]

        return _fsdp_no_sync()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def to_local_float(value: torch.Tensor) -> float:
    """A scalar as a Python float, gathering it first when it is a `DTensor` (FSDP norms)."""
    full = getattr(value, "full_tensor", None)
    return float(full() if callable(full) else value)


def _full_options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def gather_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Full (unsharded) model and optimizer state dicts, on CPU, on rank 0; `{}` elsewhere.

    A collective: every rank must call it. The optimizer state comes keyed by parameter
    names (`transformer.h.0.attn.c_attn.weight`) rather than by position, which is what
    `load_full_state` and a resume under any number of processes read back.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    options = _full_options(cpu_offload=True)
    if optimizer is None:
        return get_model_state_dict(model, options=options), {}
    return get_state_dict(model, optimizer, options=options)


def load_full_state(
    model: nn.Module,
    model_state: dict[str, Any] | None,
    optimizer: torch.optim.Optimizer | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """Load full state dicts (as `gather_full_state` returns them) into a sharded or plain model.

    Every rank passes the full dicts and keeps its own shard. Either part may be `None`.
    """
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    if model_state is not None:
        set_model_state_dict(model, model_state, options=_full_options())
    if optimizer is not None and optimizer_state is not None:
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=_full_options())


def plain_class(model: nn.Module) -> type:
    """The model's own class (FSDP2 swaps in a subclass named `FSDP<Class>`)."""
    if not is_fsdp(model):
        return type(model)
    from torch.distributed.fsdp import FSDPModule

    return next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))


class SeededBatchSampler:
    """Batches of dataset indices in a seeded order, sharded over ranks, resumable.

    The order of epoch `e` is `randperm(n)` from a generator seeded with `seed + e`, the
    same on every rank and every run; so it needs no state beyond (seed, epoch, position).
    Global batch `k` is `order[k*G : (k+1)*G]` with `G = batch_size * world_size`; rank `r`
    takes every `world_size`-th index of it starting at `r`. The union over ranks of batch
    `k` is therefore exactly the batch `k` a single process with batch `G` would see, which
    makes an N-process run match a 1-process run with the same global batch.

    A last incomplete global batch is dropped with `drop_last`; otherwise it is padded by
    wrapping around the order, so every rank gets the same number of batches (DDP needs
    every rank to step together).

    Args:
        num_examples: dataset length.
        batch_size: examples per batch on each rank.
        seed: seeds the order.
        epoch: which epoch's order.
        rank, world_size: this process and the number of processes.
        shuffle: `False` keeps dataset order (evaluation).
        drop_last: drop a last incomplete batch.
        skip_batches: batches already consumed (resume mid-epoch): they are not yielded.

    Example:
        >>> s = SeededBatchSampler(10, batch_size=4, seed=0, epoch=0, shuffle=False)
        >>> list(s)
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = False,
        skip_batches: int = 0,
    ) -> None:
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.skip_batches = skip_batches

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_examples))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.num_examples, generator=g).tolist()

    def num_batches(self) -> int:
        """Batches per epoch on each rank (including skipped ones)."""
        per_step = self.batch_size * self.world_size
        if self.drop_last:
            return self.num_examples // per_step
        return -(-self.num_examples // per_step)

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.skip_batches)

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order()
        per_step = self.batch_size * self.world_size
        for k in range(self.skip_batches, self.num_batches()):
            chunk = order[k * per_step : (k + 1) * per_step]
            if len(chunk) < per_step and self.world_size > 1:
                # pad by wrapping so every rank gets a batch and DDP stays in lockstep
                need = per_step - len(chunk)
                chunk = chunk + (order * (need // max(1, len(order)) + 1))[:need]
            yield chunk[self.rank :: self.world_size]
