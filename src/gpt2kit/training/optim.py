"""AdamW with decay on 2-D weights only, and warmup + decay learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed group.

    Decay goes on 2-D tensors (linear weights, embeddings), as in nanoGPT and GPT-2's own
    recipe; biases and LayerNorm gains/shifts (1-D) are left alone, since shrinking them
    toward 0 only fights the normalization. Tied weights appear once (`named_parameters`
    deduplicates them).

    Example:
        >>> groups = param_groups(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), 0.1)
        >>> [len(g["params"]) for g in groups], [g["weight_decay"] for g in groups]
        ([1, 3], [0.1, 0.0])
    """
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def fused_supported(device: torch.device) -> bool:
    """Whether `torch.optim.AdamW(fused=True)` runs on `device` (CPU and CUDA in torch >= 2.4)."""
    try:
        param = nn.Parameter(torch.zeros(2, device=device))
        param.grad = torch.zeros(2, device=device)
        torch.optim.AdamW([param], fused=True).step()
        return True
    except (RuntimeError, TypeError):
        return False


def create_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, weight_decay)`; fused kernel when available.

    Example:
        >>> opt = create_optimizer(nn.Linear(4, 4), lr=1e-3, weight_decay=0.1)
        >>> opt.param_groups[0]["weight_decay"], opt.param_groups[1]["weight_decay"]
        (0.1, 0.0)
    """
    groups = param_groups(model, weight_decay)
    if fused is None:
        first = next((p for g in groups for p in g["params"]), None)
        fused = first is not None and first.is_floating_point() and fused_supported(first.device)
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)


def schedule_lambda(name: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning-rate multiplier at each step: linear warmup from 0, then `name`'s decay.

    `linear` and `cosine` reach 0 at `total_steps`; `constant` ignores warmup;
    `constant_with_warmup` holds 1 after warmup.

    Example:
        >>> f = schedule_lambda("linear", warmup_steps=2, total_steps=10)
        >>> [round(f(s), 3) for s in (0, 1, 2, 6, 10)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if name == "constant":
        return lambda step: 1.0
    warmup = max(0, warmup_steps)
    total = max(total_steps, warmup + 1)

    def multiplier(step: int) -> float:
        if step < warmup:
            return step / warmup
        if name == "constant_with_warmup":
            return 1.0
        progress = min(1.0, (step - warmup) / (total - warmup))
        if name == "linear":
            return 1.0 - progress
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(
            f"unknown schedule {name!r}: use linear, cosine, constant or constant_with_warmup"
        )

    return multiplier


def create_scheduler(
    optimizer: torch.optim.Optimizer, name: str, warmup_steps: int, total_steps: int
) -> LambdaLR:
    """A `LambdaLR` following `schedule_lambda`; its state dict holds only plain numbers.

    Example:
        >>> opt = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1.0)
        >>> sched = create_scheduler(opt, "cosine", warmup_steps=0, total_steps=4)
        >>> opt.step(); sched.step(); opt.step(); sched.step()
        >>> round(sched.get_last_lr()[0], 3)
        0.5
    """
    return LambdaLR(optimizer, schedule_lambda(name, warmup_steps, total_steps))
