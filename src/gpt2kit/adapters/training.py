"""LoRA for `gpt2kit train --lora ...`: the adapter a task's model gets.

A task head on a pretrained backbone starts random, so it has to train in full: every
head module the task model adds on the backbone goes into `modules_to_save` unless the
spec names its own (`save=...`), as `peft`'s task models do for `score` / `classifier` /
`qa_outputs`.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from ..tasks import registry
from .config import LoraConfig, parse_lora_spec
from .mixin import AdapterMixin  # (every GPT2PreTrainedModel is one)

logger = logging.getLogger("gpt2kit")

# task -> peft `task_type`, from the task registry's `peft_task_type` defaults
TASK_TYPES = {
    t.name: t.defaults["peft_task_type"] for t in registry.TASKS if "peft_task_type" in t.defaults
}


def head_modules(model: nn.Module) -> list[str]:
    """The modules a task model adds on its backbone that hold weights (not the backbone,
    not a tied LM head, not a second backbone such as an encoder)."""
    prefix = getattr(model, "base_model_prefix", "")
    out = []
    for name, child in model.named_children():
        if name in (prefix, "lm_head") or isinstance(child, AdapterMixin):
            continue
        if any(True for _ in child.parameters()):
            out.append(name)
    return out


def attach_lora(
    model: nn.Module, spec: Any, task: str | None, base: str | None = None
) -> LoraConfig:
    """Parse `spec` (`--lora` or the YAML `lora:` value), add the adapter, log the counts."""
    config = parse_lora_spec(spec)
    if config.modules_to_save is None:
        heads = head_modules(model)
        config.modules_to_save = heads or None
    if config.task_type is None and task in TASK_TYPES:
        config.task_type = TASK_TYPES[task]
        config.__post_init__()
    if config.base_model_name_or_path is None and base is not None:
        config.base_model_name_or_path = str(base)
    model.add_adapter(config)  # type: ignore[operator]
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "LoRA r=%d alpha=%s on %s%s: %d of %d parameters train (%.2f%%)",
        config.r,
        config.lora_alpha,
        config.target_modules,
        f", heads in full: {', '.join(config.modules_to_save)}" if config.modules_to_save else "",
        trainable,
        total,
        100.0 * trainable / max(total, 1),
    )
    return config
