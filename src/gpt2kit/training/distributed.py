"""Multi-process data parallel under `torchrun`: process group, rank helpers, seeded sharding.

Launch any script that builds a `Trainer` with
`torchrun --nproc_per_node N script.py`; the Trainer reads `RANK`/`WORLD_SIZE`/`LOCAL_RANK`
from the environment, joins the process group (NCCL on GPUs, gloo on CPU), wraps the model
in `DistributedDataParallel`, and gives each rank its slice of every global batch. Only rank 0
writes checkpoints and logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.distributed as dist


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
    """The model inside a `DistributedDataParallel` (or `torch.compile`) wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


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
